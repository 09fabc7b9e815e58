/*
 * Handoff bridge: chat_queue_entry state webhook (ServiceNow Business Rule,
 * global scope)
 *
 * POSTs a signed state event when the queue entry of a chat the bridge opened
 * closes (state 3 Closed Complete, 4 Closed Escalated, 7 Closed by Client,
 * 8 Closed Abandoned), so the bridge ends the chat even when no closing
 * message reaches the chat's group. That happens whenever agents lack the
 * live_feed_admin (or admin) role (KB0598883: "… has left/closed the support
 * session" then goes to the Company Feed), and whenever a chat is closed from
 * the queue-entry form. Needs the Script Include HandoffWebhook.js. Setup:
 * servicenow/businessrule/README.md.
 *
 *   Table:     Chat Queue Entry [chat_queue_entry]
 *   When:      after      Update: true      Advanced: true      Order: 1000
 *   Condition: (in the script) state changes to 3, 4, 7 or 8
 *
 * Event:
 *   {"table":"chat_queue_entry","sys_id":…,"group":…,"state":"7",
 *    "assigned_to":…,"timestamp":<ms>}
 */
(function executeRule(current, previous) {
    var hook = new HandoffWebhook();
    if (!hook.configured()) {
        return;
    }
    var state = String(current.getValue('state'));
    if (previous && String(previous.getValue('state')) == state) {
        return; // another field changed
    }
    if (['3', '4', '7', '8'].indexOf(state) < 0) {
        return; // not a closing state
    }
    var group = current.getValue('group');
    if (!group || !hook.bridgeChat(group)) {
        return;
    }
    hook.send({
        table: 'chat_queue_entry',
        sys_id: current.getUniqueValue(),
        group: group,
        state: state,
        assigned_to: current.assigned_to.getDisplayValue() || '',
        timestamp: new GlideDateTime().getNumericValue()
    });
})(current, previous);
