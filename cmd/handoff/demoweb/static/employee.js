// The employee page: sends what the user types or clicks (and, while the user
// types, Teams' typing activity), and long-polls for the lines the bridge sent
// to Teams, the lines it replaced in place (the status card) and the agent's
// typing. Lines arrive rendered by the server's template (escaped there); this
// script only places them.
"use strict";
(function () {
  const body = document.body;
  const user = body.dataset.user;
  let after = Number(body.dataset.after) || 0;
  let state = body.dataset.state || "";
  let rev = Number(body.dataset.rev) || 0;
  let typing = body.dataset.typing || "";
  const typingLine = document.getElementById("typing");
  const list = document.getElementById("messages");
  const status = document.getElementById("status");
  const input = document.getElementById("text");

  function scrollDown() {
    list.scrollTop = list.scrollHeight;
  }

  function showError(text) {
    const li = document.createElement("li");
    li.className = "msg msg-notice msg-error";
    const div = document.createElement("div");
    div.className = "bubble";
    div.textContent = text;
    li.append(div);
    list.append(li);
    scrollDown();
  }

  async function send(form) {
    const data = Object.fromEntries(new FormData(form).entries());
    data.user = user;
    try {
      const r = await fetch(form.action, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(data),
      });
      if (!r.ok) {
        const a = await r.json().catch(() => ({}));
        showError("Not sent: " + (a.error || r.status));
      }
    } catch (err) {
      showError("Not sent: " + err);
    }
  }

  // While the user types, Teams sends a typing activity every few seconds.
  let typedAt = 0;
  input.addEventListener("input", () => {
    const now = Date.now();
    if (!input.value.trim() || now - typedAt < 2500) return;
    typedAt = now;
    fetch("/employee/api/typing", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: user }),
    }).catch(() => {});
  });

  document.addEventListener("submit", (ev) => {
    const form = ev.target.closest("form.js-send");
    if (!form) return;
    ev.preventDefault();
    if (form.id === "composer") {
      if (!input.value.trim()) return;
      send(form);
      input.value = "";
      typedAt = 0;
      input.focus();
      return;
    }
    send(form);
  });

  // The long-poll ends when the page goes away, so that it holds no
  // connection of the next page.
  const leaving = new AbortController();
  window.addEventListener("pagehide", () => leaving.abort());

  async function poll() {
    while (!leaving.signal.aborted) {
      try {
        const q = new URLSearchParams({ user: user, after: String(after), rev: String(rev), state: state, typing: typing });
        const r = await fetch("/employee/api/poll?" + q.toString(), { cache: "no-store", signal: leaving.signal });
        if (!r.ok) throw new Error("poll answered " + r.status);
        const a = await r.json();
        for (const u of a.updated) {
          const old = list.querySelector('li[data-seq="' + u.seq + '"]');
          if (old) old.outerHTML = u.html;
        }
        rev = a.rev;
        if (a.lines.length > 0) {
          list.insertAdjacentHTML("beforeend", a.html);
          after = a.lines[a.lines.length - 1].seq;
          scrollDown();
        }
        typing = a.status.typing || "";
        typingLine.textContent = typing;
        typingLine.hidden = !typing;
        state = a.status.state;
        body.dataset.state = state;
        status.textContent = a.status.label;
        status.className = "status status-" + state;
      } catch (err) {
        await new Promise((res) => setTimeout(res, 1000));
      }
    }
  }

  scrollDown();
  poll();
})();
