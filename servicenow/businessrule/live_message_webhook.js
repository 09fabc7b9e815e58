/*
 * Handoff bridge: live_message webhook (ServiceNow Business Rule, global scope)
 *
 * POSTs every new Connect Support chat message of a chat the bridge opened to
 * the bridge's POST /webhooks/servicenow, so agent messages reach Microsoft
 * Teams without polling. Needs the Script Include HandoffWebhook.js. Setup:
 * servicenow/businessrule/README.md.
 *
 *   Table:     Live Feed Message [live_message]
 *   When:      after      Insert: true      Advanced: true      Order: 1000
 *
 * Why "after" and not "async": the rule runs right after the insert, inside
 * the inserting transaction, so the millisecond timestamp taken here follows
 * the order in which messages were written. The HTTP call itself is made with
 * executeAsync(), so the agent's browser never waits for the bridge. Calls
 * made with executeAsync may still arrive out of order (and async rules may
 * run out of order, c_BusinessRules.md). So each event names the message
 * before it, "previous": the sys_ids of the chat's newest earlier rows that
 * this rule also sends (not the bridge user's), taken in the inserting
 * transaction. The bridge delivers a message at once when it has seen its
 * predecessor (or previous is []) and otherwise reads the chat from the
 * instance right away; events without previous (older versions of this rule)
 * are held for a short window and sorted by the timestamp.
 *
 * Why a pointer and not a per-chat counter: incrementing a counter (on the
 * queue entry or a table of our own) from a Business Rule is a read-modify-
 * write that GlideRecord cannot make atomic without a lock the platform does
 * not offer to scripts, so two agents writing at once could take the same
 * number, and a failed transaction would leave a gap the bridge would wait
 * for. The pointer needs no write at all. sys_created_on has one-second
 * resolution and sys_id is random, so "newest earlier row" is ambiguous
 * within a second: the rule sends every row of the newest second at or
 * before this one (normally one), and the bridge waits for all of them.
 * Rows of a concurrent transaction not yet committed are invisible here;
 * their order against this row is not defined by the instance either.
 *
 * Event:
 *   {"table":"live_message","sys_id":…,"group":…,"message":…,"created_by":…,
 *    "sender_name":…,"profile":…,"sys_created_on":"YYYY-MM-DD HH:MM:SS","timestamp":<ms>,
 *    "previous":[<sys_id>…],
 *    "attachments":[{"sys_id","file_name","content_type","size_bytes","download_link"}…]}
 *
 * The live_message columns (sys_id, group, message, profile, sys_created_on,
 * sys_created_by) are those seen in public integrations; the table is not a
 * documented contract.
 */
(function executeRule(current, previous /* null on insert */) {
    var hook = new HandoffWebhook();
    var group = current.getValue('group');
    if (!hook.configured() || !group) {
        return;
    }
    var createdBy = current.getValue('sys_created_by');
    if (hook.bridgeUser && createdBy == hook.bridgeUser) {
        return; // the bridge's own messages come back as echoes: no need to send them
    }
    // Only chats the bridge opened: other Connect conversations (agents
    // chatting among themselves, other channels) never leave the instance.
    if (!hook.bridgeChat(group)) {
        return;
    }
    var sysID = current.getUniqueValue();
    var createdOn = current.getValue('sys_created_on') || '';
    // The chat's newest earlier rows this rule also sends (see above).
    var previous = [];
    var prior = new GlideRecord('live_message');
    prior.addQuery('group', group);
    prior.addQuery('sys_id', '!=', sysID);
    if (createdOn) {
        prior.addQuery('sys_created_on', '<=', createdOn);
    }
    if (hook.bridgeUser) {
        prior.addQuery('sys_created_by', '!=', hook.bridgeUser);
    }
    prior.orderByDesc('sys_created_on');
    prior.setLimit(20);
    prior.query();
    var newest = null;
    while (prior.next()) {
        var on = prior.getValue('sys_created_on');
        if (newest !== null && on != newest) {
            break;
        }
        newest = on;
        previous.push(prior.getUniqueValue());
    }
    // The message's files: sys_attachment records on this row, in the
    // Attachment API's shape; the link is the instance's Attachment API URL
    // of the file (it opens for whoever may read the attachment). Files the
    // platform attaches after this insert are not seen here.
    var attachments = [];
    var base = gs.getProperty('glide.servlet.uri', '');
    var file = new GlideRecord('sys_attachment');
    file.addQuery('table_name', 'live_message');
    file.addQuery('table_sys_id', sysID);
    file.setLimit(20);
    file.query();
    while (file.next()) {
        attachments.push({
            sys_id: file.getUniqueValue(),
            file_name: file.getValue('file_name') || '',
            content_type: file.getValue('content_type') || '',
            size_bytes: file.getValue('size_bytes') || '',
            download_link: base + 'api/now/attachment/' + file.getUniqueValue() + '/file'
        });
    }
    hook.send({
        table: 'live_message',
        sys_id: sysID,
        group: group,
        message: current.getValue('message') || '',
        created_by: createdBy || '',
        sender_name: current.profile.getDisplayValue() || '',
        profile: current.getValue('profile') || '',
        sys_created_on: createdOn, // UTC, second resolution
        // Milliseconds since the epoch, now: right after the insert, so this
        // orders the chat's messages even within one second.
        timestamp: new GlideDateTime().getNumericValue(),
        previous: previous,
        attachments: attachments
    });
})(current, previous);
