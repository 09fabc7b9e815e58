/*
 * Handoff bridge: HandoffWebhook (ServiceNow Script Include, global scope)
 *
 * Signs and sends one event to the bridge's POST /webhooks/servicenow. Both
 * Business Rules call it (live_message_webhook.js for chat messages,
 * chat_queue_entry_webhook.js for chats closed by their queue entry's state).
 * Setup: servicenow/businessrule/README.md.
 *
 *   Name: HandoffWebhook    Client callable: false    Accessible from: All application scopes
 *
 * System properties read (sys_properties):
 *   handoff.webhook.url                 https://bridge.example.com/webhooks/servicenow
 *   handoff.webhook.secret              shared HMAC-SHA256 secret (= HANDOFF_WEBHOOK_SECRET)
 *   handoff.webhook.bridge_user         user_name of the bridge's integration user
 *   handoff.webhook.basic_auth_profile  sys_id of a Basic Auth Configuration
 *                                       [sys_auth_profile_basic] (the alternative to the
 *                                       secret, = HANDOFF_WEBHOOK_USER/PASSWORD)
 *
 * Request:
 *   POST <url>
 *   Content-Type: application/json; charset=utf-8
 *   X-Handoff-Timestamp: <Unix seconds when signed>
 *   X-Handoff-Signature: sha256=<base64 HMAC-SHA256 of "<timestamp>.<body>">
 *   <body: the event as JSON, every non-ASCII character escaped as \uXXXX>
 *
 * Why the escaping: the character set in which generateMac hashes its data
 * and the one in which RESTMessageV2 sends the body are not documented. With
 * every character above U+007F written as a \uXXXX escape the body is pure
 * ASCII, so both are the same bytes whatever the instance does, and the
 * bridge's JSON decoder restores the text.
 *
 * Documented APIs used: sn_ws.RESTMessageV2 (setEndpoint, setHttpMethod,
 * setRequestHeader, setRequestBody, setAuthenticationProfile, setHttpTimeout,
 * executeAsync), GlideCertificateEncryption.generateMac(base64Key,
 * "HmacSHA256", data) returning base64, GlideStringUtil.base64Encode,
 * GlideDateTime.getNumericValue, gs.getProperty. In a scoped application use
 * CertificateEncryption and gs.base64Encode instead.
 */
var HandoffWebhook = Class.create();
HandoffWebhook.prototype = {
    initialize: function() {
        this.url = gs.getProperty('handoff.webhook.url', '');
        this.secret = gs.getProperty('handoff.webhook.secret', '');
        this.profile = gs.getProperty('handoff.webhook.basic_auth_profile', '');
        this.bridgeUser = gs.getProperty('handoff.webhook.bridge_user', '');
    },

    // configured reports whether the bridge's URL is set.
    configured: function() {
        return !!this.url;
    },

    // bridgeChat reports whether the chat (live_group_profile sys_id) was
    // opened by the bridge; without a configured bridge user every chat is.
    bridgeChat: function(group) {
        if (!this.bridgeUser) {
            return true;
        }
        var entry = new GlideRecord('chat_queue_entry');
        entry.addQuery('group', group);
        entry.addQuery('opened_by.user_name', this.bridgeUser);
        entry.setLimit(1);
        entry.query();
        return entry.hasNext();
    },

    // asciiJSON is JSON.stringify(value) with every non-ASCII character
    // written as \uXXXX (UTF-16 code units, so emoji become surrogate pairs).
    asciiJSON: function(value) {
        return JSON.stringify(value).replace(/[\u0080-\uffff]/g, function(c) {
            return '\\u' + ('0000' + c.charCodeAt(0).toString(16)).slice(-4);
        });
    },

    // send signs event and hands the call to the instance's outbound queue.
    send: function(event) {
        var body = this.asciiJSON(event);
        var request = new sn_ws.RESTMessageV2();
        request.setEndpoint(this.url);
        request.setHttpMethod('post');
        request.setRequestHeader('Content-Type', 'application/json; charset=utf-8');
        request.setRequestHeader('Accept', 'application/json');
        request.setRequestBody(body);
        request.setHttpTimeout(10000);
        if (this.secret) {
            var stamp = String(Math.floor(new GlideDateTime().getNumericValue() / 1000));
            var mac = new GlideCertificateEncryption().generateMac(
                GlideStringUtil.base64Encode(this.secret), 'HmacSHA256', stamp + '.' + body);
            request.setRequestHeader('X-Handoff-Timestamp', stamp);
            request.setRequestHeader('X-Handoff-Signature', 'sha256=' + mac);
        }
        if (this.profile) {
            request.setAuthenticationProfile('basic', this.profile);
        }
        if (!this.secret && !this.profile) {
            gs.warn('handoff webhook: neither handoff.webhook.secret nor handoff.webhook.basic_auth_profile is set; the bridge will refuse the call');
        }
        try {
            request.executeAsync(); // the instance does not wait for the bridge
        } catch (e) {
            gs.error('handoff webhook: could not queue the call for ' + event.table + ' ' + event.sys_id + ': ' + e);
        }
    },

    type: 'HandoffWebhook'
};
