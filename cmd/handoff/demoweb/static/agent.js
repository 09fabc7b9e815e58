// The agent console: runs the agent's actions and long-polls the fake
// instance's changes. The queue and the chats arrive rendered by the server's
// templates (escaped there); this script swaps them in and keeps what the
// agent is typing.
"use strict";
(function () {
  const body = document.body;
  const agent = body.dataset.agent;
  let version = Number(body.dataset.version) || 0;
  const queue = document.getElementById("queue");
  const chats = document.getElementById("chats");
  const count = document.getElementById("waiting-count");
  const error = document.getElementById("error");

  function showError(text) {
    error.textContent = text;
    error.hidden = !text;
  }

  // swap replaces the chats, keeping drafts, focus and open context boxes.
  function swap(html) {
    const drafts = {};
    let focused = null;
    let caret = 0;
    chats.querySelectorAll("form.reply").forEach((f) => {
      const t = f.querySelector(".reply-text");
      drafts[f.dataset.draft] = t.value;
      if (document.activeElement === t) {
        focused = f.dataset.draft;
        caret = t.selectionStart || 0;
      }
    });
    const opened = new Set();
    chats.querySelectorAll("article.deskchat").forEach((a) => {
      const d = a.querySelector("details");
      if (d && d.open) opened.add(a.dataset.group);
    });
    chats.innerHTML = html;
    chats.querySelectorAll("article.deskchat").forEach((a) => {
      const d = a.querySelector("details");
      if (d && opened.has(a.dataset.group)) d.open = true;
      const tr = a.querySelector(".transcript");
      if (tr) tr.scrollTop = tr.scrollHeight;
    });
    chats.querySelectorAll("form.reply").forEach((f) => {
      const t = f.querySelector(".reply-text");
      if (drafts[f.dataset.draft]) t.value = drafts[f.dataset.draft];
      if (focused === f.dataset.draft) {
        t.focus();
        t.setSelectionRange(caret, caret);
      }
    });
  }

  // The user's typing indicator fades after a few seconds without a new
  // TYPING (the instance only says when typing starts and stops).
  let typingTimer = 0;
  function fadeTyping() {
    clearTimeout(typingTimer);
    if (chats.querySelector(".typing")) {
      typingTimer = setTimeout(() => chats.querySelectorAll(".typing").forEach((p) => p.remove()), 6000);
    }
  }

  function apply(a) {
    version = a.version;
    queue.innerHTML = a.queue_html;
    count.textContent = String(a.waiting.length);
    swap(a.chats_html);
    fadeTyping();
    showError("");
  }

  // While the agent types a reply, the employee sees "<agent> is typing…"
  // (Virtual Agent chats; at most one signal every few seconds per chat).
  const typedAt = {};
  chats.addEventListener("input", (ev) => {
    const box = ev.target.closest(".reply-text");
    if (!box || !box.value.trim()) return;
    const group = box.closest("form.reply").dataset.draft;
    const now = Date.now();
    if (now - (typedAt[group] || 0) < 2500) return;
    typedAt[group] = now;
    fetch("/agent/api/typing", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ agent: agent, group: group }),
    }).catch(() => {});
  });

  async function act(form, extra) {
    const data = Object.assign(Object.fromEntries(new FormData(form).entries()), extra || {});
    data.agent = agent;
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      const r = await fetch(form.action, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(data),
      });
      if (!r.ok) {
        const a = await r.json().catch(() => ({}));
        showError(a.error || "ServiceNow answered " + r.status);
        return false;
      }
      return true;
    } catch (err) {
      showError(String(err));
      return false;
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  document.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("form.js-act");
    if (!form) return;
    ev.preventDefault();
    if (!form.classList.contains("reply")) {
      act(form);
      return;
    }
    // A reply: clear the box at once (a swap while sending keeps it empty)
    // and put the text back if sending failed.
    const group = form.dataset.draft;
    const box = form.querySelector(".reply-text");
    const text = box.value.trim();
    if (!text) return;
    box.value = "";
    typedAt[group] = 0;
    const ok = await act(form, { text: text });
    const cur = chats.querySelector('form.reply[data-draft="' + CSS.escape(group) + '"] .reply-text');
    if (cur) {
      if (!ok && !cur.value) cur.value = text;
      cur.focus();
    }
  });

  // The long-poll ends when the page goes away, so that it holds no
  // connection of the next page.
  const leaving = new AbortController();
  window.addEventListener("pagehide", () => leaving.abort());

  async function poll() {
    while (!leaving.signal.aborted) {
      try {
        const q = new URLSearchParams({ agent: agent, v: String(version) });
        const r = await fetch("/agent/api/state?" + q.toString(), { cache: "no-store", signal: leaving.signal });
        if (!r.ok) {
          const a = await r.json().catch(() => ({}));
          throw new Error(a.error || "state answered " + r.status);
        }
        apply(await r.json());
      } catch (err) {
        showError(String(err.message || err));
        await new Promise((res) => setTimeout(res, 1000));
      }
    }
  }

  chats.querySelectorAll(".transcript").forEach((tr) => (tr.scrollTop = tr.scrollHeight));
  fadeTyping();
  poll();
})();
