"""Human handoff actions for an assistant behind the handoff bridge.

The bridge (Teams <-> Rasa <-> ServiceNow live chat) watches the bot's replies on
Rasa's REST channel. A reply whose custom payload holds a "handoff" object moves
the conversation to a live agent:

    {"handoff": {"reason": "user_asked", "queue": "it-service-desk"}}

"reason" is what the weekly why-handoff review groups by; "queue" is optional
(the bridge's default queue is used without it). While the agent owns the
conversation the bridge sends nothing to Rasa. When the chat ends, the bridge
appends these events to the tracker:

    slot handoff_active = false, slot handoff_outcome = <close reason>, resume
    (and restart, if the user typed /restart)

The actions below do not pause the conversation (ConversationPaused): the bridge
already keeps user messages away from Rasa during the handoff, and a paused
tracker would ignore a user who reaches the bot some other way. If you add a
pause anyway, the bridge's resume event undoes it.

Configuration (environment of the action server):
    HANDOFF_QUEUE                     default desk queue sent in the payload
    HANDOFF_FALLBACKS_BEFORE_HANDOFF  consecutive fallbacks before a handoff (2)
"""

import os
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet, UserUtteranceReverted
from rasa_sdk.executor import CollectingDispatcher

HANDOFF_ACTIVE_SLOT = "handoff_active"
HANDOFF_OUTCOME_SLOT = "handoff_outcome"
HANDOFF_QUEUE_SLOT = "handoff_queue"

TALK_TO_HUMAN_INTENT = "talk_to_human"
FALLBACK_INTENT = "nlu_fallback"

REASON_USER_ASKED = "user_asked"
REASON_FALLBACK = "fallback"
REASON_BOT_REQUESTED = "bot_requested"


def _fallbacks_before_handoff() -> int:
    try:
        return max(1, int(os.environ.get("HANDOFF_FALLBACKS_BEFORE_HANDOFF", "2")))
    except ValueError:
        return 2


def _intent_name(parse_data: Optional[Dict[Text, Any]]) -> Optional[Text]:
    intent = (parse_data or {}).get("intent") or {}
    return intent.get("name")


def handoff_reason(tracker: Tracker) -> Text:
    """Why the bot hands off, derived from the message that triggered it."""
    intent = _intent_name(tracker.latest_message)
    if intent == TALK_TO_HUMAN_INTENT:
        return REASON_USER_ASKED
    if intent == FALLBACK_INTENT:
        return REASON_FALLBACK
    # A story, rule or form decided to hand off on another intent.
    return REASON_BOT_REQUESTED


def handoff_queue(tracker: Tracker) -> Optional[Text]:
    """The desk queue: the handoff_queue slot if the domain has it and it is
    set (e.g. by a form that asked for the topic), else HANDOFF_QUEUE."""
    queue = tracker.get_slot(HANDOFF_QUEUE_SLOT) if HANDOFF_QUEUE_SLOT in tracker.slots else None
    return queue or os.environ.get("HANDOFF_QUEUE") or None


def consecutive_fallbacks(tracker: Tracker) -> int:
    """How many user messages in a row, up to the current one, were not
    understood. A restart, a new session or a handoff/handback (a change of
    the handoff_active slot) starts the count again."""
    count = 0
    for event in reversed(tracker.events):
        kind = event.get("event")
        if kind == "user":
            if _intent_name(event.get("parse_data")) != FALLBACK_INTENT:
                break
            count += 1
        elif kind in ("restart", "session_started"):
            break
        elif kind == "slot" and event.get("name") == HANDOFF_ACTIVE_SLOT:
            break
    return count


def emit_handoff(
    dispatcher: CollectingDispatcher,
    reason: Text,
    queue: Optional[Text],
    response: Text,
) -> List[EventType]:
    """Tell the user, send the handoff signal and mark the handoff active."""
    dispatcher.utter_message(response=response)
    payload: Dict[Text, Any] = {"reason": reason}
    if queue:
        payload["queue"] = queue
    # On the REST channel this arrives as its own message:
    # {"recipient_id": "...", "custom": {"handoff": {...}}}
    dispatcher.utter_message(json_message={"handoff": payload})
    return [SlotSet(HANDOFF_ACTIVE_SLOT, True), SlotSet(HANDOFF_OUTCOME_SLOT, None)]


class ActionHandoff(Action):
    """Hands the conversation to a live agent (rule: intent talk_to_human)."""

    def name(self) -> Text:
        return "action_handoff"

    def run(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: Dict[Text, Any],
    ) -> List[EventType]:
        return emit_handoff(
            dispatcher,
            reason=handoff_reason(tracker),
            queue=handoff_queue(tracker),
            response="utter_handoff",
        )


class ActionFallbackOrHandoff(Action):
    """Answers a message the NLU did not understand (rule: intent
    nlu_fallback). After HANDOFF_FALLBACKS_BEFORE_HANDOFF such messages in a
    row it hands off with reason "fallback" instead."""

    def name(self) -> Text:
        return "action_fallback_or_handoff"

    def run(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: Dict[Text, Any],
    ) -> List[EventType]:
        if consecutive_fallbacks(tracker) >= _fallbacks_before_handoff():
            return emit_handoff(
                dispatcher,
                reason=REASON_FALLBACK,
                queue=handoff_queue(tracker),
                response="utter_handoff_fallback",
            )
        dispatcher.utter_message(response="utter_default")
        # Like Rasa's action_default_fallback: forget the misunderstood message
        # so it does not steer later predictions (it stays in the event log,
        # where the count above and the bridge's transcript still see it).
        return [UserUtteranceReverted()]
