// The page of `similar-images serve`: no framework, no build step, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem("similar-images-token") || "", health: null, objectUrls: [],
  uploads: new Map(),  // history key -> {answer, preview}: Back to an upload shows it again
  shown: false,        // results are on the page
};
const NARROW = window.matchMedia("(max-width: 40rem)");

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
  // what is shown is not the answer to this input: dim it until the next answer
  $("answer").classList.toggle("stale", Boolean(message) && state.shown);
}

function setBusy(busy) {
  $("busy").hidden = !busy;
  document.querySelector("main").setAttribute("aria-busy", busy ? "true" : "false");
}

function k() {
  // The field is "Results": say it in its words, before asking the server
  const most = (state.health && state.health.max_k) || 100;
  const text = $("k").value.trim();
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > most) {
    throw new Error("Results: give a whole number from 1 to " + most + " (got " + (text || "nothing") + ")");
  }
  return Number(text);
}

async function run(request, queryPreview, label) {
  showError("");
  setBusy(true);
  try {
    const answer = await api("/api/search", request());
    await render(answer, queryPreview);
    return answer;
  } catch (error) {
    const own = error.message.startsWith("Results:");  // the page's own check, not about the image
    showError((label && !own ? label + ": " : "") + error.message);
    return null;
  } finally {
    setBusy(false);
  }
}

function clearAnswer() {
  for (const id of ["query-title", "query", "results-title", "no-match"]) $(id).hidden = true;
  $("results").replaceChildren();
  $("timings").textContent = "";
  state.shown = false;
  $("answer").classList.remove("stale");
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
  for (const hit of answer.results) list.append(await resultItem(hit));
  $("results-title").hidden = false;
  $("no-match").hidden = !answer.no_close_match;
  const t = answer.timings;
  $("timings").textContent = answer.results.length + " results in " + t.total_ms.toFixed(0) + " ms (decode " +
    t.decode_ms.toFixed(0) + ", model " + t.model_ms.toFixed(0) + ", search " + t.search_ms.toFixed(1) + ")";
  state.shown = true;
  $("answer").classList.remove("stale");
  // On a phone the controls fill the screen: bring the query and its results up, also after
  // a tapped result (its new query would be off-screen above).
  if (NARROW.matches) $("answer").scrollIntoView({ block: "start" });
}

async function resultItem(hit) {
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
  return item;
}

function form(request) {
  // k is read when the search starts: a bad value is said before anything is sent
  return () => { const kValue = k(); return request(kValue); };
}

async function searchFile(file) {
  if (!file) return;
  const preview = URL.createObjectURL(file);
  const key = "upload-" + Date.now();
  history.pushState({ upload: key }, "", location.pathname);  // an upload cannot be put in the address
  const answer = await run(form((kValue) => {
    const body = new FormData();
    body.append("image", file, "upload");
    body.append("k", String(kValue));
    return { method: "POST", body: body };
  }), preview, file.name || "the image");
  if (answer) state.uploads.set(key, { answer: answer, preview: preview });
}

function jsonSearch(body) {
  return form((kValue) => ({ method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(Object.assign({ k: kValue }, body)) }));
}

function searchId(id, push) {
  if (push) history.pushState({ id: id }, "", "?id=" + id);
  return run(jsonSearch({ id: id }));
}

function searchUrl(url, push) {
  if (push) history.pushState({ url: url }, "", "?url=" + encodeURIComponent(url));
  return run(jsonSearch({ url: url }), null, url);
}

function searchText(text, push) {  // CLIP databases: words in the images' space
  if (push) history.pushState({ text: text }, "", "?text=" + encodeURIComponent(text));
  return run(jsonSearch({ text: text }));
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

function describeIndex(index) {
  return index === "flat" || index === "exact" ? "exact search" : "indexed search";
}

async function connect() {
  try {
    state.health = await api("/api/health");
    $("token-form").hidden = true;
    $("summary").textContent = state.health.count + " images · " + state.health.model + " · " +
      describeIndex(state.health.index);
    $("url-form").hidden = !state.health.allow_urls;
    $("text-form").hidden = !state.health.text_queries;
    $("k").max = state.health.max_k;
    $("k").value = state.health.default_k;  // the API's default, so the page and the API agree
    fromAddress();
  } catch (error) {
    $("summary").textContent = "Not connected";
    showError(error.message);
  }
}

function wire() {
  if (window.matchMedia("(pointer: coarse)").matches) {
    $("drop-help").textContent = "…or paste an image.";  // no keyboard shortcut on a phone
  } else if (/Mac|iPhone|iPad/.test(navigator.platform)) {
    $("drop-help").textContent = "…or drop an image here, or paste one (⌘V).";
  }
  $("file").addEventListener("change", (event) => { searchFile(event.target.files[0]); event.target.value = ""; });
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
    if (event.target instanceof HTMLInputElement) return;  // text pasted into a field is the field's
    const file = firstImage(event.clipboardData && event.clipboardData.items);
    event.preventDefault();
    if (file) searchFile(file);
    else showError("Nothing to search in what you pasted: copy an image itself (not its file name or text), then paste.");
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
  window.addEventListener("popstate", (event) => {
    const params = new URLSearchParams(location.search);
    const upload = event.state && event.state.upload && state.uploads.get(event.state.upload);
    showError("");
    if (params.has("id") || params.has("url") || params.has("text")) fromAddress();
    else if (upload) render(upload.answer, upload.preview);  // Back to an upload: its answer again
    else clearAnswer();  // nothing to show: no empty headings, no stale timings
  });
}

wire();
connect();
