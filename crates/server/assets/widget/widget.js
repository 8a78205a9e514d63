// AnyReply's web chat widget. A page adds
//   <script src="https://anyreply.example.com/widget.js" data-key="arpk_…" defer></script>
// and gets a chat button that opens a panel talking to the widget's assistant. Plain
// JavaScript, no build step, nothing fetched from elsewhere; everything it draws lives in a
// shadow root, so the page's styles and the widget's leave each other alone.
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || !script.dataset.key) {
    console.error("AnyReply widget: the script tag needs data-key=\"arpk_…\"");
    return;
  }
  var key = script.dataset.key;
  var api = new URL(script.src).origin + "/api/widget/messages";
  // While the panel is open, the history is read this often, so that an operator's answer
  // shows up without a reload.
  var REFRESH_MS = 10000;

  // The visitor's token: issued by the server with their first message, kept in this
  // browser, one conversation per visitor. It is the visitor's only proof of who they are.
  var TOKEN_NAME = "anyreply.visitor-token." + key;
  function storage(action) {
    try {
      return action(localStorage);
    } catch (e) {
      // Storage refused (privacy mode): the conversation lasts as long as the page.
      return null;
    }
  }
  var token = storage(function (store) {
    // An id of the older script (chosen by the browser) proves nothing: it goes.
    store.removeItem("anyreply.visitor." + key);
    return store.getItem(TOKEN_NAME);
  });
  function keepToken(issued) {
    token = issued;
    storage(function (store) {
      if (issued) store.setItem(TOKEN_NAME, issued);
      else store.removeItem(TOKEN_NAME);
    });
  }
  var NOT_ALLOWED = "This site is not allowed to use this chat";

  var STYLE =
    ":host { all: initial; position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;" +
    " font: 15px/1.4 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #1d2330; }" +
    "button { font: inherit; cursor: pointer; }" +
    ".launcher { width: 56px; height: 56px; border-radius: 50%; border: 0; background: #2f5bea;" +
    " color: #fff; box-shadow: 0 4px 14px rgba(0,0,0,.25); display: grid; place-items: center; }" +
    ".launcher:focus-visible, .close:focus-visible, .send:focus-visible { outline: 3px solid #9db4ff; outline-offset: 2px; }" +
    ".panel { position: absolute; right: 0; bottom: 68px; width: min(360px, calc(100vw - 40px));" +
    " height: min(520px, calc(100vh - 110px)); background: #fff; border-radius: 14px;" +
    " box-shadow: 0 10px 40px rgba(0,0,0,.25); display: flex; flex-direction: column; overflow: hidden; }" +
    ".panel[hidden] { display: none; }" +
    "header { display: flex; align-items: center; justify-content: space-between; padding: 12px 14px;" +
    " background: #2f5bea; color: #fff; font-weight: 600; }" +
    ".close { border: 0; background: transparent; color: #fff; font-size: 20px; line-height: 1; padding: 2px 6px; }" +
    ".log { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 8px; background: #f5f7fb; }" +
    ".msg { max-width: 80%; padding: 8px 11px; border-radius: 12px; white-space: pre-wrap; overflow-wrap: anywhere; }" +
    ".user { align-self: flex-end; background: #2f5bea; color: #fff; border-bottom-right-radius: 4px; }" +
    ".assistant, .operator { align-self: flex-start; background: #fff; border: 1px solid #dde3ee; border-bottom-left-radius: 4px; }" +
    ".operator { border-color: #b9c9ff; }" +
    ".note { align-self: center; font-size: 13px; color: #5b6478; text-align: center; }" +
    ".writing::after { content: '\\2026'; }" +
    ".typing { display: inline-flex; gap: 4px; align-items: center; height: 1.4em; }" +
    ".dot { width: 6px; height: 6px; border-radius: 50%; background: #8a93a6; animation: anyreply-dot 1.2s infinite ease-in-out both; }" +
    ".dot:nth-child(2) { animation-delay: .2s; } .dot:nth-child(3) { animation-delay: .4s; }" +
    "@keyframes anyreply-dot { 0%, 80%, 100% { opacity: .25; } 40% { opacity: 1; } }" +
    "@media (prefers-reduced-motion: reduce) { .dot { animation: none; opacity: .6; } }" +
    ".sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }" +
    "form { display: flex; gap: 8px; padding: 10px; border-top: 1px solid #e3e8f0; }" +
    "label { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }" +
    "input { flex: 1; min-width: 0; font: inherit; padding: 8px 10px; border: 1px solid #c9d1e0; border-radius: 8px; }" +
    "input:focus { outline: 2px solid #2f5bea; border-color: transparent; }" +
    ".send { border: 0; border-radius: 8px; background: #2f5bea; color: #fff; padding: 0 14px; }" +
    ".send:disabled { opacity: .5; cursor: default; }" +
    "input:disabled { background: #eef1f6; cursor: not-allowed; }";

  var host = document.createElement("div");
  host.setAttribute("data-anyreply-widget", "");
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    "<style>" + STYLE + "</style>" +
    '<div class="panel" role="dialog" aria-label="Chat" hidden>' +
    "<header><span>Chat with us</span>" +
    '<button type="button" class="close" aria-label="Close chat">\u00d7</button></header>' +
    '<div class="log" role="log" aria-live="polite"></div>' +
    "<form>" +
    '<label for="anyreply-message">Message</label>' +
    '<input id="anyreply-message" name="message" autocomplete="off" maxlength="10000" placeholder="Write a message">' +
    '<button type="submit" class="send">Send</button>' +
    "</form></div>" +
    '<button type="button" class="launcher" aria-label="Open chat" aria-expanded="false">' +
    '<svg width="26" height="26" viewBox="0 0 24 24" aria-hidden="true"><path fill="currentColor" ' +
    'd="M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z"/></svg>' +
    "</button>";

  var panel = root.querySelector(".panel");
  var log = root.querySelector(".log");
  var form = root.querySelector("form");
  var input = root.querySelector("input");
  var send = root.querySelector(".send");
  var launcher = root.querySelector(".launcher");
  var loaded = false;
  var sending = false;
  var shown = 0;
  var refresh = null;

  function bubble(role, text) {
    var item = document.createElement("div");
    item.className = "msg " + role;
    item.textContent = text;
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    return item;
  }

  // Three dots while the reply is made; screen readers hear "typing…" (the log is live).
  function typingDots() {
    var dots = document.createElement("span");
    dots.className = "typing";
    dots.setAttribute("role", "status");
    dots.innerHTML =
      '<span class="dot" aria-hidden="true"></span><span class="dot" aria-hidden="true"></span>' +
      '<span class="dot" aria-hidden="true"></span><span class="sr">typing\u2026</span>';
    return dots;
  }

  function note(text) {
    var item = bubble("note", text);
    item.className = "note";
    return item;
  }

  function headers(extra) {
    var all = { Authorization: "Bearer " + key };
    if (token) all["X-Visitor-Token"] = token;
    for (var name in extra) all[name] = extra[name];
    return all;
  }

  // The page's origin is not one the widget lists: nothing here can work, so the panel says
  // so instead of offering a field.
  var refused = false;
  function refuse() {
    if (refused) return;
    refused = true;
    clearInterval(refresh);
    log.textContent = "";
    note(NOT_ALLOWED);
    input.disabled = true;
    send.disabled = true;
  }

  // The error envelope of a refusal, or {} if it has none.
  function errorBody(response) {
    return response.json().catch(function () {
      return {};
    });
  }

  // Draws the conversation as the server has it, unless a message is on its way. A visitor
  // without a token has no conversation yet.
  function loadHistory() {
    if (!token || refused) {
      loaded = true;
      return Promise.resolve();
    }
    return fetch(api, { headers: headers({}) })
      .then(function (response) {
        if (response.ok) return response.json();
        return errorBody(response).then(function (body) {
          if (response.status === 403 && body.error_code === "ORIGIN_NOT_ALLOWED") refuse();
          // A token the server no longer knows: a new visitor from the next message on.
          else if (body.error_code === "VISITOR_TOKEN_INVALID") keepToken(null);
          else throw new Error("history " + response.status);
          return null;
        });
      })
      .then(function (history) {
        loaded = true;
        if (!history || sending || history.messages.length === shown) return;
        log.textContent = "";
        history.messages.forEach(function (message) {
          if (message.content) bubble(message.role, message.content);
        });
        shown = history.messages.length;
      })
      .catch(function () {
        if (!loaded) note("The conversation could not be loaded.");
        loaded = true;
      });
  }

  function open() {
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", "Close chat");
    if (!loaded) loadHistory();
    if (!refused) refresh = setInterval(loadHistory, REFRESH_MS);
    input.focus();
  }

  function close() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", "Open chat");
    clearInterval(refresh);
    launcher.focus();
  }

  // Reads Server-Sent Events off `response`, calling `on(event, data)` for each.
  function readEvents(response, on) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
        var end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          var block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          var name = "message";
          var data = [];
          block.split("\n").forEach(function (line) {
            if (line.indexOf("event:") === 0) name = line.slice(6).trim();
            else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
          });
          if (data.length) on(name, JSON.parse(data.join("\n")));
        }
        return pump();
      });
    }
    return pump();
  }

  function sendMessage(text) {
    sending = true;
    send.disabled = true;
    bubble("user", text);
    var reply = bubble("assistant", "");
    reply.appendChild(typingDots());
    var written = "";
    var finished = false;
    function fail(message) {
      reply.remove();
      note(message || "Sorry, the message could not be sent. Please try again.");
    }
    // Sent again once without the token if the server no longer knows it (the message was
    // not stored then): the visitor starts a new conversation rather than losing the message.
    function post(retried) {
      return fetch(api, {
        method: "POST",
        headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
        body: JSON.stringify({ message: text }),
      }).then(function (response) {
        var issued = response.headers.get("X-Visitor-Token");
        if (issued) keepToken(issued);
        if (response.status !== 401 || retried || !token) return response;
        return response
          .clone()
          .json()
          .then(function (body) {
            if (body.error_code !== "VISITOR_TOKEN_INVALID") return response;
            keepToken(null);
            return post(true);
          })
          .catch(function () {
            return response;
          });
      });
    }
    post(false)
      .then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (!response.ok || type.indexOf("text/event-stream") !== 0) {
          return response.json().then(function (body) {
            finished = true;
            if (response.status === 403 && body.error_code === "ORIGIN_NOT_ALLOWED") {
              reply.remove();
              refuse();
            } else if (!response.ok) {
              fail(response.status === 429 ? "Too many messages at once; please wait a moment." : body.message);
            } else {
              done(body);
            }
          });
        }
        return readEvents(response, function (name, data) {
          if (name === "delta") {
            // The dots give way to the words (textContent below replaces them).
            reply.classList.add("writing");
            written += data.text;
            reply.textContent = written;
            log.scrollTop = log.scrollHeight;
          } else if (name === "reply") {
            finished = true;
            done(data);
          } else if (name === "error") {
            finished = true;
            fail(data.message);
          }
        });
      })
      .catch(function () {
        if (!finished) fail();
        finished = true;
      })
      .then(function () {
        if (!finished) fail();
        sending = false;
        send.disabled = refused;
        shown = log.querySelectorAll(".msg").length;
      });
    function done(answer) {
      reply.classList.remove("writing");
      if (answer.reply) {
        reply.textContent = answer.reply;
      } else {
        reply.remove();
        // Taken over by a person, or answered with the next message.
        if (answer.ai_disabled) note("Thanks! Someone from our team will answer here.");
      }
      log.scrollTop = log.scrollHeight;
    }
  }

  launcher.addEventListener("click", function () {
    if (panel.hidden) open();
    else close();
  });
  root.querySelector(".close").addEventListener("click", close);
  root.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && !panel.hidden) close();
  });
  // Enter sends (the form's submit).
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || sending || refused) return;
    input.value = "";
    sendMessage(text);
  });

  function mount() {
    document.body.appendChild(host);
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
