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
 * run out of order, c_BusinessRules.md); the bridge holds each chat's
 * deliveries for a short window and sorts them by this timestamp.
 *
 * Event:
 *   {"table":"live_message","sys_id":…,"group":…,"message":…,"created_by":…,
 *    "sender_name":…,"profile":…,"sys_created_on":"YYYY-MM-DD HH:MM:SS","timestamp":<ms>}
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
    hook.send({
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
    });
})(current, previous);
