// Package review records why handoffs happen and exports those records for the
// weekly conversation-driven-development review.
//
// A Recorder (the bridge.Reviewer) builds a bridge.ReviewRecord when the bot
// hands a conversation to a human — the trigger from the handoff payload and
// the Rasa tracker, the last user turns with the bot's replies, a pseudonymous
// user key — and adds the outcome when the session ends. Transcripts are
// redacted (Redactor) before they are stored. Bot turns and human turns are
// kept apart; only bot turns ever reach the NLU training-data export.
//
// Exports stream records from a Source (bridge.Store) in four formats:
// CSV, JSONL, Rasa NLU YAML and a self-contained HTML report. They are
// available on demand (Export, WriteFileAtomic, ParseRange for the CLI), over
// HTTP (Handler) and weekly (Weekly, which also applies the retention).
//
// Memory does not grow with the number of records: CSV and JSONL are written
// record by record; the NLU export keeps at most a capped number of example
// utterances; the HTML report keeps counters and the wait and duration samples
// (8 bytes each, reservoir-sampled beyond a million).
package review
