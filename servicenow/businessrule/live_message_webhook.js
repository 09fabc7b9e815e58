/*
 * Handoff bridge: live_message webhook (ServiceNow Business Rule, global scope)
 *
 * POSTs every new Connect Support chat message of a chat the bridge opened to
 * the bridge's POST /webhooks/servicenow, so agent messages reach Microsoft
 * Teams without polling. Setup: servicenow/businessrule/README.md.
 *
 *   Table:     Live Feed Message [live_message]
 *   When:      after      Insert: true      Advanced: true      Order: 1000
 *
 * Why "after" and not "async": the rule runs right after the insert, inside
 * the inserting transaction, so the millisecond timestamp taken here follows
 * the order in which messages were written. The HTTP call itself is made with
 * executeAsync(), so the agent's browser never waits for the bridge. Calls
 * made with executeAsync may still arrive out of order (and async rules may
 * run out of order, c_BusinessRules.md); the bridge holds each chat's
 * deliveries for a short window and sorts them by this timestamp.
 *
 * System properties read (sys_properties; create them as described in the
 * README):
 *   handoff.webhook.url                 https://bridge.example.com/webhooks/servicenow
 *   handoff.webhook.secret              shared HMAC-SHA256 secret (= HANDOFF_WEBHOOK_SECRET)
 *   handoff.webhook.bridge_user         user_name of the bridge's integration user
 *   handoff.webhook.basic_auth_profile  sys_id of a Basic Auth Configuration
 *                                       [sys_auth_profile_basic] (the alternative to the
 *                                       secret, = HANDOFF_WEBHOOK_USER/PASSWORD)
 *
 * Request:
 *   POST <url>
 *   Content-Type: application/json
 *   X-Handoff-Timestamp: <Unix seconds when signed>
 *   X-Handoff-Signature: sha256=<base64 HMAC-SHA256 of "<timestamp>.<body>">
 *   {"table":"live_message","sys_id":…,"group":…,"message":…,"created_by":…,
 *    "sender_name":…,"profile":…,"sys_created_on":"YYYY-MM-DD HH:MM:SS","timestamp":<ms>}
 *
 * What is verified and what is not:
 *   - sn_ws.RESTMessageV2 (setEndpoint, setHttpMethod, setRequestHeader,
 *     setRequestBody, setAuthenticationProfile, setHttpTimeout, executeAsync)
 *     and GlideCertificateEncryption.generateMac(base64Key, "HmacSHA256", data)
 *     returning a base64 MAC are documented server APIs (ServiceNow API
 *     reference, Xanadu to Australia).
 *   - The live_message columns (sys_id, group, message, profile,
 *     sys_created_on, sys_created_by) are those seen in public integrations;
 *     the table is not a documented contract.
 *   - NOT verified on a real instance: the character set generateMac hashes
 *     non-ASCII text in (the bridge hashes UTF-8 bytes). Test with a message
 *     containing "é" or an emoji; if only those fail with 401, use Basic auth.
 *   - The bridge accepts a signature only within 5 minutes of its own clock;
 *     keep the instance and the bridge on NTP time. A call the instance's
 *     outbound queue holds longer is refused (hybrid delivery recovers it).
 *
 * In a scoped application use CertificateEncryption instead of
 * GlideCertificateEncryption, and gs.base64Encode instead of
 * GlideStringUtil.base64Encode.
 */
(function executeRule(current, previous /* null on insert */) {
    var url = gs.getProperty('handoff.webhook.url', '');
    if (!url) {
        return; // not configured
    }
    var bridgeUser = gs.getProperty('handoff.webhook.bridge_user', '');
    var createdBy = current.getValue('sys_created_by');
    var group = current.getValue('group');
    if (!group) {
        return;
    }
    if (bridgeUser) {
        // The bridge's own messages come back as echoes: no need to send them.
        if (createdBy == bridgeUser) {
            return;
        }
        // Only chats the bridge opened: other Connect conversations (agents
        // chatting among themselves, other channels) never leave the instance.
        var entry = new GlideRecord('chat_queue_entry');
        entry.addQuery('group', group);
        entry.addQuery('opened_by.user_name', bridgeUser);
        entry.setLimit(1);
        entry.query();
        if (!entry.hasNext()) {
            return;
        }
    }

    var payload = {
        table: 'live_message',
        sys_id: current.getUniqueValue(),
        group: group,
        message: current.getValue('message') || '',
        created_by: createdBy || '',
        sender_name: current.profile.getDisplayValue() || '',
        profile: current.getValue('profile') || '',
        sys_created_on: current.getValue('sys_created_on') || '', // UTC, second resolution
        // Milliseconds since the epoch, now: right after the insert, so this
        // orders the chat's messages even within one second.
        timestamp: new GlideDateTime().getNumericValue()
    };
    var body = JSON.stringify(payload);

    var request = new sn_ws.RESTMessageV2();
    request.setEndpoint(url);
    request.setHttpMethod('post');
    request.setRequestHeader('Content-Type', 'application/json');
    request.setRequestHeader('Accept', 'application/json');
    request.setRequestBody(body);
    request.setHttpTimeout(10000);

    var secret = gs.getProperty('handoff.webhook.secret', '');
    if (secret) {
        var stamp = String(Math.floor(new GlideDateTime().getNumericValue() / 1000));
        var mac = new GlideCertificateEncryption().generateMac(
            GlideStringUtil.base64Encode(secret), 'HmacSHA256', stamp + '.' + body);
        request.setRequestHeader('X-Handoff-Timestamp', stamp);
        request.setRequestHeader('X-Handoff-Signature', 'sha256=' + mac);
    }
    var profile = gs.getProperty('handoff.webhook.basic_auth_profile', '');
    if (profile) {
        request.setAuthenticationProfile('basic', profile);
    }
    if (!secret && !profile) {
        gs.warn('handoff webhook: neither handoff.webhook.secret nor handoff.webhook.basic_auth_profile is set; the bridge will refuse the call');
    }

    try {
        request.executeAsync(); // the instance does not wait for the bridge
    } catch (e) {
        gs.error('handoff webhook: could not queue the call for message ' + payload.sys_id + ': ' + e);
    }
})(current, previous);
