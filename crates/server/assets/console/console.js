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
