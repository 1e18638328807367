// The page of `similar-images serve`: no framework, no build step, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("similar-images-token") || "", health: null, objectUrls: [] };

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.token) h.Authorization = "Bearer " + state.token;
  return h;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({}, options, { headers: headers(options && options.headers) }));
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    if (response.status === 401) $("token-form").hidden = false;
    throw new Error((body && body.error) || ("HTTP " + response.status));
  }
  return body;
}

async function imageUrl(path) {
  // <img src> cannot send the token: fetch the image, show it from a blob URL.
  if (!state.token) return path;
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) return "";
  const url = URL.createObjectURL(await response.blob());
  state.objectUrls.push(url);
  return url;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function setBusy(busy) {
  $("busy").hidden = !busy;
  document.querySelector("main").setAttribute("aria-busy", busy ? "true" : "false");
}

function k() {
  const value = parseInt($("k").value, 10);
  return Number.isFinite(value) && value > 0 ? value : 12;
}

async function run(request, queryPreview) {
  showError("");
  setBusy(true);
  try {
    const answer = await api("/api/search", request);
    await render(answer, queryPreview);
  } catch (error) {
    showError(error.message);
  } finally {
    setBusy(false);
  }
}

async function render(answer, queryPreview) {
  state.objectUrls.forEach((url) => URL.revokeObjectURL(url));
  state.objectUrls = [];
  const q = answer.query;
  $("query-title").hidden = false;
  $("query").hidden = false;
  $("query-img").src = queryPreview || (q.kind === "id" ? await imageUrl("/api/images/" + q.id + "/thumbnail") : "");
  $("query-img").hidden = q.kind === "text";  // words have no picture
  $("query-caption").textContent = q.kind === "id" ? "Image " + q.id : q.kind === "url" ? q.url :
    q.kind === "text" ? "\u201c" + q.text + "\u201d" : "Your image";
  const list = $("results");
  list.replaceChildren();
  for (const hit of answer.results) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "result";
    button.dataset.id = hit.id;
    button.setAttribute("aria-label", "Search from " + hit.name + ", score " + hit.score.toFixed(3) +
      (hit.verdict ? ", " + hit.verdict : ""));
    const img = document.createElement("img");
    img.alt = hit.name;
    img.src = await imageUrl(hit.thumbnail_url);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    if (hit.verdict) {  // what the score means for this model (null: never measured)
      const verdict = document.createElement("span");
      verdict.className = "verdict verdict-" + hit.verdict.replace(/ /g, "-");
      verdict.textContent = hit.verdict;
      score.append(" ", verdict);
    }
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = hit.name;
    button.append(img, score, name);
    button.addEventListener("click", () => searchId(hit.id, true));
    item.append(button);
    list.append(item);
  }
  $("results-title").hidden = false;
  $("no-match").hidden = !answer.no_close_match;
  const t = answer.timings;
  $("timings").textContent = answer.results.length + " results in " + t.total_ms.toFixed(0) + " ms (decode " +
    t.decode_ms.toFixed(0) + ", model " + t.model_ms.toFixed(0) + ", search " + t.search_ms.toFixed(1) + ")";
}

function searchFile(file) {
  if (!file) return;
  const form = new FormData();
  form.append("image", file, "upload");
  form.append("k", String(k()));
  history.pushState({}, "", location.pathname);  // an upload cannot be put in the address
  run({ method: "POST", body: form }, URL.createObjectURL(file));
}

function searchId(id, push) {
  if (push) history.pushState({ id: id }, "", "?id=" + id);
  run({ method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ id: id, k: k() }) });
}

function searchUrl(url, push) {
  if (push) history.pushState({ url: url }, "", "?url=" + encodeURIComponent(url));
  run({ method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ url: url, k: k() }) });
}

function searchText(text, push) {  // CLIP databases: words in the images' space
  if (push) history.pushState({ text: text }, "", "?text=" + encodeURIComponent(text));
  run({ method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text: text, k: k() }) });
}

function fromAddress() {
  const params = new URLSearchParams(location.search);
  if (params.has("id") && /^\d+$/.test(params.get("id"))) searchId(parseInt(params.get("id"), 10), false);
  else if (params.has("text") && state.health && state.health.text_queries) searchText(params.get("text"), false);
  else if (params.has("url") && state.health && state.health.allow_urls) searchUrl(params.get("url"), false);
}

function firstImage(items) {
  for (const item of items || []) {
    const file = item.getAsFile ? (item.kind === "file" ? item.getAsFile() : null) : item;
    if (file && file.type.startsWith("image/")) return file;
  }
  return null;
}

async function connect() {
  try {
    state.health = await api("/api/health");
    $("token-form").hidden = true;
    $("summary").textContent = state.health.count + " images · " + state.health.model + " · " + state.health.index;
    $("url-form").hidden = !state.health.allow_urls;
    $("text-form").hidden = !state.health.text_queries;
    $("k").max = state.health.max_k;
    fromAddress();
  } catch (error) {
    $("summary").textContent = "Not connected";
    showError(error.message);
  }
}

function wire() {
  $("file").addEventListener("change", (event) => searchFile(event.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = firstImage(event.dataTransfer.files);
    file ? searchFile(file) : showError("Drop an image file.");
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("file").click(); }
  });
  document.addEventListener("paste", (event) => {
    const file = firstImage(event.clipboardData && event.clipboardData.items);
    if (file) { event.preventDefault(); searchFile(file); }
  });
  $("url-form").addEventListener("submit", (event) => { event.preventDefault(); searchUrl($("url").value, true); });
  $("text-form").addEventListener("submit", (event) => { event.preventDefault(); searchText($("text").value, true); });
  $("random").addEventListener("click", () => {
    if (!state.health || !state.health.count) return showError("The database is empty.");
    searchId(Math.floor(Math.random() * state.health.count), true);
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value;
    sessionStorage.setItem("similar-images-token", state.token);
    connect();
  });
  window.addEventListener("popstate", () => {
    const params = new URLSearchParams(location.search);
    if (params.has("id") || params.has("url") || params.has("text")) fromAddress();
    else { $("results").replaceChildren(); $("query").hidden = true; }
  });
}

wire();
connect();
