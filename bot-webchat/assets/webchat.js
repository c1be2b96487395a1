/*
 * bot-webchat widget: plain JavaScript, no build step.
 *
 *   <script src="/webchat/widget.js"></script>
 *   <script>
 *     WebChat.mount({ token: "v1....", container: document.getElementById("chat") });
 *     // or: WebChat.mount({ tokenProvider: () => fetch("/my/token").then(r => r.text()) });
 *   </script>
 *
 * Speaks protocol v1 (see the crate's `protocol` module): joins with the token, resumes after a
 * reconnect with the last sequence number it saw (and the epoch of that numbering), sends again
 * the messages that had no ack, reconnects with back-off and jitter, sends heartbeats, shows text,
 * images, buttons, cards, carousels, files and quick replies.
 */
(function (global) {
  "use strict";

  var STYLE =
    ".wc{font:14px/1.4 system-ui,sans-serif;display:flex;flex-direction:column;height:100%;border:1px solid #ccc;border-radius:8px;overflow:hidden}" +
    ".wc-log{flex:1;overflow-y:auto;padding:8px;background:#fafafa}" +
    ".wc-msg{margin:4px 0;max-width:80%;padding:6px 10px;border-radius:12px;white-space:pre-wrap;word-wrap:break-word}" +
    ".wc-bot{background:#fff;border:1px solid #ddd}" +
    ".wc-user{background:#0b5cff;color:#fff;margin-left:auto}" +
    ".wc-pending{opacity:.6}" +
    ".wc-card{border:1px solid #ddd;border-radius:8px;padding:8px;margin:4px 4px 4px 0;background:#fff;min-width:160px}" +
    ".wc-cards{display:flex;overflow-x:auto}" +
    ".wc-card img,.wc-msg img{max-width:100%;border-radius:6px}" +
    ".wc-btn,.wc-chip{margin:4px 4px 0 0;padding:4px 10px;border:1px solid #0b5cff;border-radius:14px;background:#fff;color:#0b5cff;cursor:pointer}" +
    ".wc-chips{padding:4px 8px}" +
    ".wc-status{font-size:12px;color:#888;padding:2px 8px}" +
    ".wc-form{display:flex;border-top:1px solid #ddd}" +
    ".wc-input{flex:1;border:0;padding:10px;font:inherit}" +
    ".wc-send{border:0;background:#0b5cff;color:#fff;padding:0 16px;cursor:pointer}";

  var TOKEN_CODES = { 4001: "bad token", 4002: "token expired" };

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  function defaultUrl() {
    var script = document.currentScript;
    var base = script ? new URL(script.src, location.href) : new URL(location.href);
    var path = base.pathname.replace(/\/widget\.js$/, "").replace(/\/demo$/, "");
    return (base.protocol === "https:" ? "wss:" : "ws:") + "//" + base.host + path + "/ws";
  }
  var scriptUrl = defaultUrl();

  function Chat(options) {
    this.url = options.url || scriptUrl;
    this.token = options.token || null;
    this.tokenProvider = options.tokenProvider || null;
    this.storage = options.storage || global.sessionStorage;
    this.key = "webchat:" + this.url;
    var saved = {};
    try { saved = JSON.parse(this.storage.getItem(this.key) || "{}"); } catch (e) { saved = {}; }
    this.epoch = saved.epoch || null;
    this.lastSeq = typeof saved.seq === "number" ? saved.seq : null;
    this.pending = {};       // id -> frame, sent but not acknowledged
    this.nextId = 1;
    this.attempt = 0;
    this.socket = null;
    this.heartbeat = null;
    this.stopped = false;
    this.onEvent = options.onEvent || function () {};
    this.render(options.container || document.body);
    this.connect();
  }

  Chat.prototype.render = function (container) {
    if (!document.getElementById("wc-style")) {
      var style = el("style");
      style.id = "wc-style";
      style.textContent = STYLE;
      document.head.appendChild(style);
    }
    var root = el("div", "wc");
    this.log = el("div", "wc-log");
    this.chips = el("div", "wc-chips");
    this.status = el("div", "wc-status", "connecting…");
    var form = el("form", "wc-form");
    this.input = el("input", "wc-input");
    this.input.placeholder = "Type a message";
    this.input.setAttribute("aria-label", "message");
    var send = el("button", "wc-send", "Send");
    send.type = "submit";
    form.appendChild(this.input);
    form.appendChild(send);
    var self = this;
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var text = self.input.value.trim();
      if (text) { self.sendText(text); self.input.value = ""; }
    });
    root.appendChild(this.log);
    root.appendChild(this.chips);
    root.appendChild(this.status);
    root.appendChild(form);
    container.appendChild(root);
    this.root = root;
  };

  Chat.prototype.getToken = function () {
    if (this.tokenProvider) return Promise.resolve(this.tokenProvider());
    return Promise.resolve(this.token);
  };

  Chat.prototype.connect = function () {
    var self = this;
    if (this.stopped) return;
    this.getToken().then(function (token) {
      self.token = token;
      var socket = new WebSocket(self.url);
      self.socket = socket;
      socket.onopen = function () {
        var join = { type: "join", v: 1, token: token };
        if (self.lastSeq !== null) { join.last_seq = self.lastSeq; join.epoch = self.epoch; }
        socket.send(JSON.stringify(join));
      };
      socket.onmessage = function (e) { self.onFrame(JSON.parse(e.data)); };
      socket.onclose = function (e) { self.onClose(socket, e.code); };
    }, function () { self.retry(); });
  };

  Chat.prototype.onFrame = function (frame) {
    switch (frame.type) {
      case "welcome":
        this.attempt = 0;
        if (frame.epoch !== this.epoch) {
          // Another numbering (another node without a shared history, or a restart): count
          // from its welcome. A gap in the same numbering (older messages no longer kept)
          // keeps the count: what this tab has shown is still skipped when it comes again.
          this.epoch = frame.epoch;
          this.lastSeq = frame.resumed > 0 ? frame.seq - frame.resumed : frame.seq;
        }
        this.save();
        this.setStatus("connected");
        this.root.setAttribute("data-state", "connected");
        this.startHeartbeat(frame.heartbeat_ms);
        // Messages sent while away, or whose ack was lost: the server handles each id once.
        for (var id in this.pending) this.socket.send(JSON.stringify(this.pending[id]));
        break;
      case "message":
        if (this.lastSeq !== null && frame.seq <= this.lastSeq) return; // seen already
        this.lastSeq = frame.seq;
        this.save();
        this.showBot(frame);
        break;
      case "ack":
        var shown = this.log.querySelector('[data-id="' + frame.id + '"]');
        if (shown) shown.classList.remove("wc-pending");
        delete this.pending[frame.id];
        break;
      case "error":
        var self = this;
        setTimeout(function () {
          var again = self.pending[frame.id];
          if (again && self.socket && self.socket.readyState === 1) self.socket.send(JSON.stringify(again));
        }, frame.retry_after_ms || 1000);
        break;
      case "typing":
        this.setStatus("typing…");
        break;
    }
    this.onEvent(frame);
  };

  Chat.prototype.onClose = function (socket, code) {
    if (socket !== this.socket) return;
    clearInterval(this.heartbeat);
    this.root.setAttribute("data-state", "disconnected");
    if (TOKEN_CODES[code] && !this.tokenProvider) {
      this.setStatus("cannot connect: " + TOKEN_CODES[code]);
      return;
    }
    this.retry();
  };

  Chat.prototype.retry = function () {
    // Exponential back-off with full jitter, 0.5 s to 30 s.
    var ceiling = Math.min(30000, 500 * Math.pow(2, this.attempt++));
    var wait = Math.random() * ceiling;
    this.setStatus("reconnecting…");
    var self = this;
    setTimeout(function () { self.connect(); }, wait);
  };

  Chat.prototype.startHeartbeat = function (ms) {
    var self = this;
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(function () {
      if (self.socket && self.socket.readyState === 1) self.socket.send('{"type":"heartbeat"}');
    }, ms || 20000);
  };

  Chat.prototype.save = function () {
    try { this.storage.setItem(this.key, JSON.stringify({ epoch: this.epoch, seq: this.lastSeq })); } catch (e) { /* private mode */ }
  };

  Chat.prototype.setStatus = function (text) { this.status.textContent = text; };

  Chat.prototype.newId = function () {
    return "c" + Date.now().toString(36) + "-" + (this.nextId++) + "-" + Math.random().toString(36).slice(2, 8);
  };

  Chat.prototype.submit = function (frame, label) {
    frame.id = this.newId();
    this.pending[frame.id] = frame;
    var bubble = el("div", "wc-msg wc-user wc-pending", label);
    bubble.setAttribute("data-id", frame.id);
    this.log.appendChild(bubble);
    this.log.scrollTop = this.log.scrollHeight;
    this.chips.textContent = "";
    if (this.socket && this.socket.readyState === 1) this.socket.send(JSON.stringify(frame));
  };

  Chat.prototype.sendText = function (text) { this.submit({ type: "message", text: text }, text); };

  Chat.prototype.act = function (action, label) {
    if (action.type === "url") { global.open(action.value, "_blank", "noopener"); return; }
    if (action.type === "postback") { this.submit({ type: "postback", data: action.value }, label); return; }
    this.sendText(action.value);
  };

  Chat.prototype.button = function (b, className) {
    var self = this;
    var node = el("button", className, b.label);
    node.type = "button";
    node.addEventListener("click", function () { self.act(b.action, b.label); });
    return node;
  };

  Chat.prototype.card = function (c) {
    var node = el("div", "wc-card");
    if (c.image) { var img = el("img"); img.src = c.image.url; img.alt = ""; node.appendChild(img); }
    node.appendChild(el("strong", null, c.title));
    if (c.text) node.appendChild(el("div", null, c.text));
    var self = this;
    (c.buttons || []).forEach(function (b) { node.appendChild(self.button(b, "wc-btn")); });
    return node;
  };

  Chat.prototype.showBot = function (frame) {
    var m = frame.message || {};
    var self = this;
    var bubble = el("div", "wc-msg wc-bot");
    bubble.setAttribute("data-seq", frame.seq);
    if (m.text) bubble.appendChild(el("div", "wc-text", m.text));
    if (m.image) { var img = el("img"); img.src = m.image.preview_url || m.image.url; img.alt = ""; bubble.appendChild(img); }
    (m.buttons || []).forEach(function (b) { bubble.appendChild(self.button(b, "wc-btn")); });
    if (m.card) bubble.appendChild(this.card(m.card));
    if (m.carousel && m.carousel.length) {
      var row = el("div", "wc-cards");
      m.carousel.forEach(function (c) { row.appendChild(self.card(c)); });
      bubble.appendChild(row);
    }
    if (m.file) { var a = el("a", null, m.file.name); a.href = m.file.url; a.target = "_blank"; a.rel = "noopener"; bubble.appendChild(a); }
    this.log.appendChild(bubble);
    this.log.scrollTop = this.log.scrollHeight;
    this.chips.textContent = "";
    (m.quick_replies || []).forEach(function (q) { self.chips.appendChild(self.button(q, "wc-chip")); });
    this.setStatus("connected");
  };

  /** Closes the socket as a network failure would (for tests and demos): the widget reconnects. */
  Chat.prototype.drop = function () { if (this.socket) this.socket.close(); };

  /** Stops for good. */
  Chat.prototype.stop = function () { this.stopped = true; clearInterval(this.heartbeat); if (this.socket) this.socket.close(); };

  global.WebChat = {
    mount: function (options) { var chat = new Chat(options || {}); global.__webchat = chat; return chat; }
  };
})(window);
