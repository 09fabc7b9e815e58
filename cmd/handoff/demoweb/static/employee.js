// The employee page: sends what the user types or clicks, and long-polls for
// the lines the bridge sent to Teams. Lines arrive rendered by the server's
// template (escaped there); this script only places them.
"use strict";
(function () {
  const body = document.body;
  const user = body.dataset.user;
  let after = Number(body.dataset.after) || 0;
  let state = body.dataset.state || "";
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

  document.addEventListener("submit", (ev) => {
    const form = ev.target.closest("form.js-send");
    if (!form) return;
    ev.preventDefault();
    if (form.id === "composer") {
      if (!input.value.trim()) return;
      send(form);
      input.value = "";
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
        const q = new URLSearchParams({ user: user, after: String(after), state: state });
        const r = await fetch("/employee/api/poll?" + q.toString(), { cache: "no-store", signal: leaving.signal });
        if (!r.ok) throw new Error("poll answered " + r.status);
        const a = await r.json();
        if (a.lines.length > 0) {
          list.insertAdjacentHTML("beforeend", a.html);
          after = a.lines[a.lines.length - 1].seq;
          scrollDown();
        }
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
