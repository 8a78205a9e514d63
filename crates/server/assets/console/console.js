"use strict";
// The conversation page follows its conversation's events (Server-Sent Events) and, on each,
// has htmx reload the panel that shows the history and the takeover switch.
(function () {
  let source = null;
  let followed = null;

  function follow() {
    const panel = document.getElementById("conversation-panel");
    const url = panel ? panel.dataset.events : null;
    if (url === followed) {
      return;
    }
    if (source) {
      source.close();
      source = null;
    }
    followed = url;
    if (!url) {
      return;
    }
    source = new EventSource(url);
    source.onmessage = function () {
      const current = document.getElementById("conversation-panel");
      if (current) {
        htmx.trigger(current, "changed");
      }
    };
  }

  htmx.onLoad(follow);
})();

// Every signed-in page follows the account's events and, on each that may change the inbox
// (a handoff, an assignment, the AI switched, a new message), has htmx reload the inbox's
// counts and the "needs a human" badge (each throttled to one reload in two seconds). The
// page's title carries the badge's count, so a handoff shows in a background tab too: no sound.
(function () {
  const counted = ["handoff.requested", "conversation.assigned", "ai.disabled", "ai.enabled", "message.received"];
  let source = null;

  function retitle() {
    const badge = document.getElementById("handoff-badge");
    if (!badge) {
      return;
    }
    const title = document.title.replace(/^\(\d+\) /, "");
    const marked = badge.querySelector("[data-count]");
    const count = marked ? Number(marked.dataset.count) : 0;
    document.title = count > 0 ? "(" + count + ") " + title : title;
  }

  function follow() {
    const signedIn = document.getElementById("handoff-badge") !== null;
    if (!signedIn && source) {
      source.close();
      source = null;
    }
    if (source || !signedIn) {
      return;
    }
    source = new EventSource("/console/inbox/events");
    source.onmessage = function (message) {
      const kind = String(message.data).split(" ")[0];
      if (counted.indexOf(kind) < 0) {
        return;
      }
      document.querySelectorAll(".live-inbox").forEach(function (element) {
        htmx.trigger(element, "inbox-changed");
      });
    };
  }

  htmx.onLoad(function () {
    follow();
    retitle();
  });
  document.addEventListener("htmx:afterSwap", retitle);
})();
