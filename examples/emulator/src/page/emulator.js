// The emulator page: draws each platform's conversation from the JSON the platform's fake
// received, and sends what the developer types or taps to /api/send and /api/tap.
"use strict";

const state = {
  platform: "line",
  after: 0,
  version: null,
  items: [],          // every item received, in order
  byPlatform: {},     // platform -> items
  selected: null,     // the user item whose event the panel shows
};

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

const HINTS = {
  line: "As a LINE user: each message is a webhook signed with x-line-signature; replies arrive at the fake Messaging API.",
  messenger: "As a Messenger user: each message is a webhook signed with X-Hub-Signature-256; replies arrive at the fake Send API.",
  discord: "As a Discord user: text goes through the gateway as MESSAGE_CREATE; /name option:value sends a signed slash command interaction.",
  console: "As the console: each line goes to the bot's standard input; replies are its standard output.",
};

async function api(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    let message = "HTTP " + response.status;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    $("hint").textContent = message;
    $("hint").classList.add("error");
    throw new Error(message);
  }
}

function send(text) {
  return api("/api/send", { platform: state.platform, text });
}

function tap(action) {
  return api("/api/tap", Object.assign({ platform: state.platform }, action));
}

function chip(label, action) {
  const button = el("button", "chip", label);
  button.type = "button";
  button.addEventListener("click", (e) => { e.stopPropagation(); tap(Object.assign({ label }, action)); });
  return button;
}

function link(label, url, className) {
  const a = el("a", className || "chip", label);
  a.href = url; a.target = "_blank"; a.rel = "noopener";
  a.addEventListener("click", (e) => e.stopPropagation());
  return a;
}

function image(url) {
  const img = el("img", "image");
  img.alt = url;
  img.src = url;
  // Offline, example URLs do not load: show where the image would come from.
  img.onerror = () => { const box = el("div", "img", url); img.replaceWith(box); };
  return img;
}

// ---- LINE: text, image, templates, Flex, quick replies ----

function lineAction(action) {
  if (!action) return null;
  const label = action.label || action.displayText || action.text || action.data || action.uri;
  switch (action.type) {
    case "postback": return chip(label, { action: "postback", data: action.data, display_text: action.displayText || null });
    case "message": return chip(label, { action: "message", data: action.text });
    case "uri": return link(label, action.uri);
    default: return el("span", "chip", label + " (" + action.type + ")");
  }
}

function lineFlex(node) {
  if (!node) return el("div");
  switch (node.type) {
    case "carousel": {
      const row = el("div", "carousel");
      (node.contents || []).forEach((b) => row.appendChild(lineFlex(b)));
      return row;
    }
    case "bubble": {
      const card = el("div", "card");
      ["header", "hero", "body", "footer"].forEach((part) => { if (node[part]) card.appendChild(lineFlex(node[part])); });
      return card;
    }
    case "box": {
      const box = el("div", "flex-box");
      box.style.display = "flex";
      box.style.flexDirection = node.layout === "horizontal" || node.layout === "baseline" ? "row" : "column";
      box.style.gap = "4px";
      box.style.padding = "6px 12px";
      (node.contents || []).forEach((c) => box.appendChild(lineFlex(c)));
      return box;
    }
    case "text": {
      const text = el("div", node.weight === "bold" ? "title" : "text", node.text);
      if (node.color) text.style.color = node.color;
      text.style.padding = "0";
      return text;
    }
    case "image": return image(node.url);
    case "separator": return el("hr");
    case "button": {
      const action = lineAction(node.action);
      if (action) action.classList.add("action");
      return action || el("span");
    }
    default: return el("div", "text", "[" + node.type + "]");
  }
}

function lineTemplate(template) {
  const columns = template.type === "carousel" ? template.columns : [template];
  const row = el("div", template.type === "carousel" ? "carousel" : "");
  (columns || []).forEach((column) => {
    const card = el("div", "card");
    if (column.thumbnailImageUrl) card.appendChild(image(column.thumbnailImageUrl));
    if (column.title) card.appendChild(el("div", "title", column.title));
    card.appendChild(el("div", "text", column.text));
    (column.actions || []).forEach((a) => { const b = lineAction(a); if (b) { b.classList.add("action"); card.appendChild(b); } });
    row.appendChild(card);
  });
  return row;
}

function drawLine(item, box) {
  const m = item.body;
  if (item.kind === "typing") { box.appendChild(el("div", "bubble typing", "…")); return; }
  switch (m.type) {
    case "text": box.appendChild(el("div", "bubble text", m.text)); break;
    case "image": box.appendChild(image(m.originalContentUrl || m.previewImageUrl)); break;
    case "flex": box.appendChild(lineFlex(m.contents)); break;
    case "template": box.appendChild(lineTemplate(m.template)); break;
    default: box.appendChild(el("div", "bubble", "[" + m.type + "] " + (m.altText || JSON.stringify(m))));
  }
  if (m.quickReply && m.quickReply.items) {
    const chips = el("div", "chips quick-replies");
    m.quickReply.items.forEach((q) => { const c = lineAction(q.action); if (c) chips.appendChild(c); });
    box.appendChild(chips);
  }
}

// ---- Messenger: text, attachments, templates, quick replies ----

function messengerButton(button) {
  if (button.type === "postback") {
    const b = chip(button.title, { action: "postback", data: button.payload });
    b.classList.add("action");
    return b;
  }
  if (button.type === "web_url") return link(button.title, button.url, "action");
  return el("span", "action", button.title + " (" + button.type + ")");
}

function drawMessenger(item, box) {
  const m = item.body;
  if (item.kind === "typing") { box.appendChild(el("div", "bubble typing", "…")); return; }
  if (m.text) box.appendChild(el("div", "bubble text", m.text));
  const attachment = m.attachment;
  if (attachment) {
    const payload = attachment.payload || {};
    if (attachment.type === "image") box.appendChild(image(payload.url));
    else if (attachment.type === "template") {
      if (payload.template_type === "generic") {
        const row = el("div", "carousel");
        (payload.elements || []).forEach((e) => {
          const card = el("div", "card");
          if (e.image_url) card.appendChild(image(e.image_url));
          card.appendChild(el("div", "title", e.title));
          if (e.subtitle) card.appendChild(el("div", "text", e.subtitle));
          (e.buttons || []).forEach((b) => card.appendChild(messengerButton(b)));
          row.appendChild(card);
        });
        box.appendChild(row);
      } else if (payload.template_type === "button") {
        const card = el("div", "card");
        card.appendChild(el("div", "text", payload.text));
        (payload.buttons || []).forEach((b) => card.appendChild(messengerButton(b)));
        box.appendChild(card);
      } else {
        box.appendChild(el("div", "bubble", "[" + payload.template_type + " template]"));
      }
    } else {
      box.appendChild(link("[" + attachment.type + "] " + (payload.url || ""), payload.url || "#", "bubble"));
    }
  }
  if (m.quick_replies) {
    const chips = el("div", "chips quick-replies");
    m.quick_replies.forEach((q) => chips.appendChild(chip(q.title || q.content_type, { action: "quick_reply", data: q.payload || "" })));
    box.appendChild(chips);
  }
}

// ---- Discord: content, embeds, components, interaction responses ----

function discordMessage(data, box) {
  if (data.content) box.appendChild(el("div", "bubble text", data.content));
  (data.embeds || []).forEach((e) => {
    const embed = el("div", "embed");
    if (e.title) embed.appendChild(e.url ? link(e.title, e.url, "title") : el("div", "title", e.title));
    if (e.description) embed.appendChild(el("div", "text", e.description));
    if (e.image && e.image.url) embed.appendChild(image(e.image.url));
    box.appendChild(embed);
  });
  (data.components || []).forEach((row) => {
    const line = el("div", "components");
    (row.components || []).forEach((c) => {
      if (c.type !== 2) { line.appendChild(el("span", "dbutton", "[component " + c.type + "]")); return; }
      if (c.style === 5) { line.appendChild(link(c.label, c.url, "dbutton")); return; }
      const button = el("button", "dbutton chip s" + (c.style || 2), c.label);
      button.type = "button";
      button.disabled = !!c.disabled;
      button.addEventListener("click", (e) => { e.stopPropagation(); tap({ action: "component", label: c.label, data: c.custom_id }); });
      line.appendChild(button);
    });
    box.appendChild(line);
  });
}

function drawDiscord(item, box) {
  const author = el("div", item.from === "user" ? "author" : "author app", item.from === "user" ? "You" : "bot");
  box.appendChild(author);
  if (item.kind === "typing") { box.appendChild(el("div", "typing", "bot is typing…")); return; }
  if (item.kind === "interaction") {
    const response = item.body || {};
    switch (response.type) {
      case 1: box.appendChild(el("div", "typing", "PONG")); return;
      case 4: case 7: discordMessage(response.data || {}, box); return;
      case 5: box.appendChild(el("div", "typing deferred", "bot is thinking…")); return;
      case 6: box.appendChild(el("div", "typing deferred", "(update deferred)")); return;
      case 9: {
        const modal = el("div", "embed modal");
        modal.appendChild(el("div", "title", (response.data || {}).title));
        ((response.data || {}).components || []).forEach((row) => (row.components || []).forEach((input) => modal.appendChild(el("div", "text", "▭ " + input.label))));
        box.appendChild(modal);
        return;
      }
      default: box.appendChild(el("div", "bubble", JSON.stringify(response)));
    }
    return;
  }
  discordMessage(item.body || {}, box);
}

// ---- Console: lines, with [Label] choices ----

function drawConsole(item, box) {
  const text = (item.body && item.body.text) || "";
  const line = el("div", "bubble text");
  if (item.from === "bot") {
    // `bot> text [Label] [Label]`: the labels can be typed, so they can be tapped.
    const labels = [];
    const bare = text.replace(/\[([^\]]+)\]/g, (whole, label) => { labels.push(label); return ""; }).trimEnd();
    line.textContent = bare;
    box.appendChild(line);
    if (labels.length) {
      const chips = el("div", "chips quick-replies");
      labels.forEach((label) => {
        if (label === "image") return;
        chips.appendChild(chip(label, { action: "label" }));
      });
      box.appendChild(chips);
    }
    return;
  }
  line.textContent = text;
  box.appendChild(line);
}

const DRAW = { line: drawLine, messenger: drawMessenger, discord: drawDiscord, console: drawConsole };

function drawItem(item) {
  if (item.from === "note") {
    const note = el("div", "msg note", typeof item.body === "string" ? item.body : JSON.stringify(item.body));
    note.dataset.seq = item.seq;
    return note;
  }
  const box = el("div", "msg " + item.from + " kind-" + item.kind);
  box.dataset.seq = item.seq;
  if (item.from === "user") {
    const shown = item.body.text !== undefined ? item.body.text : item.body.tapped;
    if (item.platform === "discord") box.appendChild(el("div", "author", "You"));
    box.appendChild(el("div", "bubble text", shown));
    box.addEventListener("click", () => select(item));
  } else {
    try { DRAW[item.platform](item, box); }
    catch (e) { box.appendChild(el("div", "bubble", "cannot draw: " + e + " " + JSON.stringify(item.body))); }
    box.addEventListener("click", () => showJson(item.body, "what the " + item.platform + " API received"));
  }
  if (item.via) box.appendChild(el("div", "via", item.via));
  return box;
}

function showJson(value, caption) {
  $("event").textContent = JSON.stringify(value, null, 2);
  $("event-caption").textContent = caption || "";
}

function select(item) {
  state.selected = item.seq;
  showJson(item.event, "— " + item.platform + ", " + item.via);
}

function redraw() {
  const conversation = $("conversation");
  conversation.replaceChildren(...(state.byPlatform[state.platform] || []).map(drawItem));
  conversation.scrollTop = conversation.scrollHeight;
}

function append(items) {
  const conversation = $("conversation");
  items.forEach((item) => {
    (state.byPlatform[item.platform] = state.byPlatform[item.platform] || []).push(item);
    state.items.push(item);
    if (item.from === "user") select(item);
    if (item.platform === state.platform) conversation.appendChild(drawItem(item));
  });
  conversation.scrollTop = conversation.scrollHeight;
}

function showFigures(f) {
  $("fig-inflight").textContent = f.in_flight;
  $("fig-queue").textContent = f.queue_depth;
  $("fig-p99").textContent = f.p99_ms === null ? "–" : "≤ " + (f.p99_ms < 1 ? f.p99_ms.toFixed(2) : Math.round(f.p99_ms)) + " ms";
  const processed = Object.entries(f.processed || {}).filter(([, v]) => v > 0);
  $("fig-processed").textContent = processed.length ? processed.map(([k, v]) => k + " " + v).join(", ") : "0";
  $("fig-dead").textContent = f.dead;
}

function showTraces(traces) {
  const list = $("traces");
  list.replaceChildren(...traces.map((t) => {
    const li = el("li", "trace");
    const fields = Object.fromEntries(t.fields);
    const took = t.duration_ms === null ? "running" : t.duration_ms.toFixed(1) + " ms";
    li.appendChild(el("div", "head", [fields["messaging.system"], fields["bot.event.kind"], "attempt " + fields["bot.attempt"], took].join(" · ")));
    li.appendChild(el("div", "line", "event " + fields["messaging.message.id"] + " in " + fields["messaging.message.conversation_id"]));
    t.lines.forEach((line) => li.appendChild(el("div", "line", line)));
    if (t.lines_dropped) li.appendChild(el("div", "line", "… " + t.lines_dropped + " more lines"));
    return li;
  }));
}

async function poll() {
  for (;;) {
    try {
      const query = "after=" + state.after + (state.version === null ? "" : "&version=" + state.version);
      const response = await fetch("/api/state?" + query);
      if (!response.ok) throw new Error("HTTP " + response.status);
      const snapshot = await response.json();
      state.version = snapshot.version;
      if (snapshot.items.length) {
        state.after = snapshot.items[snapshot.items.length - 1].seq;
        append(snapshot.items);
      }
      showTraces(snapshot.traces);
      showFigures(snapshot.figures);
      $("connection").textContent = "connected";
      document.body.dataset.connected = "true";
    } catch (e) {
      $("connection").textContent = "emulator unreachable, retrying";
      document.body.dataset.connected = "false";
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

function choose(platform) {
  state.platform = platform;
  $("chat").dataset.platform = platform;
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.platform === platform));
  $("hint").textContent = HINTS[platform];
  $("hint").classList.remove("error");
  redraw();
}

document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => choose(tab.dataset.platform)));
$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text.trim()) return;
  $("text").value = "";
  $("hint").classList.remove("error");
  $("hint").textContent = HINTS[state.platform];
  send(text).catch(() => {});
});

// For scripts and tests: the same calls the page's controls make.
window.__emulator = { send, tap, choose, state };

choose("line");
poll();
