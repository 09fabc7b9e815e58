package review

import (
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

func TestRecorderLabel(t *testing.T) {
	at := time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)
	rec, err := NewRecorder(RecorderConfig{Salt: "s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, text string
		found      bool
		prior      *bridge.Verdict
		want       *bridge.Verdict // nil: the record is unchanged
		notLabel   bool
		ack        string
	}{
		{name: "topic", text: "#topic reset MFA on new phone", found: true,
			want: &bridge.Verdict{Topic: "reset MFA on new phone"}, ack: `topic "reset MFA on new phone"`},
		{name: "case and spacing", text: "  #TOPIC   vpn   drops ", found: true, want: &bridge.Verdict{Topic: "vpn drops"}},
		{name: "several labels", text: "#bot-could-have password reset #needed-human", found: true,
			want: &bridge.Verdict{BotCouldHave: "password_reset", NeededHuman: true}},
		{name: "keeps earlier labels", text: "#topic printer jam", found: true, prior: &bridge.Verdict{NeededHuman: true, BotCouldHave: "x"},
			want: &bridge.Verdict{Topic: "printer jam", NeededHuman: true, BotCouldHave: "x"}},
		{name: "topic redacted", text: "#topic call me at +49 30 1234567", found: true, want: &bridge.Verdict{Topic: "call me at [phone]"}},
		{name: "missing argument", text: "#topic", found: true, ack: "Label not recorded: write #topic <what the case was>"},
		{name: "no record", text: "#needed-human", found: false, ack: "no review record"},
		{name: "unknown keyword", text: "#hashtag fun", notLabel: true},
		{name: "label later in text", text: "see #topic", notLabel: true},
		{name: "plain", text: "hello", notLabel: true},
		{name: "empty", text: "", notLabel: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := bridge.ReviewRecord{SessionID: "s1", Verdict: tc.prior}
			out, ack, ok := rec.Label(in, tc.found, tc.text, "Beth Anglin", at)
			if ok == tc.notLabel {
				t.Fatalf("ok = %v for %q", ok, tc.text)
			}
			if tc.notLabel {
				return
			}
			if tc.ack != "" && !strings.Contains(ack, tc.ack) {
				t.Errorf("ack = %q, want it to contain %q", ack, tc.ack)
			}
			if !strings.HasPrefix(ack, "[handoff, not shown to the employee] ") {
				t.Errorf("ack %q does not say the employee cannot see it", ack)
			}
			if tc.want == nil {
				if out.Verdict != tc.prior {
					t.Errorf("verdict changed to %+v", out.Verdict)
				}
				return
			}
			want := *tc.want
			want.Agent, want.At = "Beth Anglin", at
			if out.Verdict == nil || *out.Verdict != want {
				t.Errorf("verdict = %+v, want %+v", out.Verdict, want)
			}
		})
	}
}

func TestRecorderLabelPrefix(t *testing.T) {
	for _, bad := range []string{"# ", "a b", "123456789"} {
		if _, err := NewRecorder(RecorderConfig{Salt: "s", LabelPrefix: bad}, nil); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
	rec, err := NewRecorder(RecorderConfig{Salt: "s", LabelPrefix: "!!"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := rec.Label(bridge.ReviewRecord{}, true, "#topic x", "", time.Time{}); ok {
		t.Error("the default prefix still works after configuring another")
	}
	if out, _, ok := rec.Label(bridge.ReviewRecord{}, true, "!!topic x", "", time.Time{}); !ok || out.Verdict.Topic != "x" {
		t.Errorf("custom prefix: ok %v verdict %+v", ok, out.Verdict)
	}
}

func FuzzLabel(f *testing.F) {
	for _, s := range []string{"#topic a", "#needed-human", "#bot-could-have x y", "#", "##topic", "#topic\x00"} {
		f.Add(s)
	}
	rec, err := NewRecorder(RecorderConfig{Salt: "s"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string) {
		out, ack, ok := rec.Label(bridge.ReviewRecord{}, true, text, "a", time.Time{})
		if !ok {
			return
		}
		if ack == "" {
			t.Fatal("a label got no acknowledgment")
		}
		if v := out.Verdict; v != nil && len([]rune(v.Topic)) > maxTopicRunes {
			t.Fatalf("topic of %d runes", len([]rune(v.Topic)))
		}
	})
}
