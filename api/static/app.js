// pixseek web page: plain JS over the HTTP API (no framework, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { like: null, offset: 0, body: null, file: null, job: null, blobs: [],
  view: "browse", chips: [], marks: new Map(), seq: 0 };
const KEY = "pixseek.apiKey";

function apiKey() { return localStorage.getItem(KEY) || ""; }

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (apiKey()) h["X-API-Key"] = apiKey();
  return h;
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  const response = await fetch(path, opts);
  if (response.status === 401) {
    $("key-box").hidden = false;
    $("api-key").focus();
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || `${response.status} ${response.statusText}`);
  return data;
}

function message(text, isError) {
  $("message").textContent = text || "";
  $("message").className = isError ? "error" : "";
}

// Images: plain URLs, or with an API key, fetched with the header and shown as blob: URLs.
function setImage(img, url) {
  if (!apiKey()) { img.src = url; return; }
  fetch(url, { headers: headers() })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(r.status))))
    .then((blob) => { const u = URL.createObjectURL(blob); state.blobs.push(u); img.src = u; })
    .catch(() => { img.alt = "image unavailable"; });
}

function releaseBlobs() {
  state.blobs.forEach((u) => URL.revokeObjectURL(u));
  state.blobs = [];
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function labelsOf(payload) {
  const labels = payload.labels;
  return Array.isArray(labels) ? labels.join(", ") : labels ? String(labels) : "";
}

// The query's words, for highlighting them in the OCR text (ocr:"..." / text:"..." unwrapped).
function queryWords() {
  const q = (state.body && state.body.q) || "";
  return q.replace(/\b(ocr|text):/gi, " ").toLowerCase().split(/[^\p{L}\p{N}]+/u)
    .filter((w) => w.length > 1);
}

// The OCR text with the query's words wrapped in <mark> (text nodes only: no HTML injection).
function ocrText(text) {
  const box = el("span", "ocr");
  const words = new Set(queryWords());
  text.split(/([\p{L}\p{N}]+)/u).forEach((part) => {
    if (words.has(part.toLowerCase())) box.appendChild(el("mark", null, part));
    else box.appendChild(document.createTextNode(part));
  });
  box.title = "text read in the image (OCR)";
  return box;
}

function card(hit) {
  const figure = el("figure", "card");
  figure.dataset.id = hit.id;
  figure.tabIndex = 0;
  figure.setAttribute("aria-label", `${hit.source || hit.id}: Enter for details`);
  const link = el("a", "pic");
  link.href = hit.image_url;
  link.target = "_blank";
  link.rel = "noopener";
  link.tabIndex = -1;
  link.addEventListener("click", (e) => {
    if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    openDetail(hit.id, figure);
  });
  const img = el("img");
  img.loading = "lazy";
  img.alt = hit.source || hit.id;
  setImage(img, hit.thumbnail_url);
  link.appendChild(img);
  const caption = el("figcaption");
  const browsing = state.view === "browse";
  caption.appendChild(el("span", "score", browsing ? `#${hit.rank} · ${when(hit.payload || {})}`
    : `#${hit.rank} · ${hit.score.toFixed(4)}`));
  caption.appendChild(el("span", "source", hit.source || hit.id));
  const labels = labelsOf(hit.payload || {});
  if (labels) caption.appendChild(el("span", "labels", labels));
  const ocr = (hit.payload || {}).ocr;
  if (typeof ocr === "string" && ocr.trim()) caption.appendChild(ocrText(ocr.replace(/\n/g, " · ")));
  if (hit.group_size > 1) {
    const n = hit.group_size - 1;
    caption.appendChild(el("span", "group", `+${n} near duplicate${n === 1 ? "" : "s"}`));
  }
  const tools = el("div", "tools");
  const more = el("button", "like", "More like this");
  more.type = "button";
  more.addEventListener("click", () => moreLikeThis(hit));
  tools.appendChild(more);
  if (!browsing) tools.append(markButton(hit, "good"), markButton(hit, "bad"));
  caption.appendChild(tools);
  figure.append(link, caption);
  paintMarks(figure);
  return figure;
}

function showHits(hits, append) {
  const grid = $("grid");
  if (!append) { releaseBlobs(); grid.replaceChildren(); }
  hits.forEach((hit) => grid.appendChild(card(hit)));
}

// The typed filter (split at AND) and the facet chips, ANDed.
function filters() {
  const text = $("where").value.trim();
  const typed = !text ? [] : text.startsWith("{") ? [text]
    : text.split(/\s+AND\s+/).map((s) => s.trim()).filter(Boolean);
  return typed.concat(...state.chips.map((c) => c.where));
}

function searchBody() {
  const body = {
    collection: $("collection").value,
    q: $("q").value.trim(),
    where: filters(),
    limit: Number($("limit").value),
  };
  if (state.like) body.like = [state.like.id];
  if ($("collapse").checked) body.collapse = "near";
  if ($("mode").value !== "auto") body.mode = $("mode").value;
  if ($("diverse").checked) body.diversity = Number($("diversity").value);
  if ($("cutoff").value) body.cutoff = $("cutoff").value;
  const feedback = marked();
  if (feedback.good.length || feedback.bad.length) body.feedback = feedback;
  return body;
}

async function postSearch(body, file) {
  if (!file) {
    return api("search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }
  const form = new FormData();
  form.append("query", JSON.stringify(body));
  form.append("images", file, file.name);
  return api("search", { method: "POST", body: form });
}

async function search(append) {
  if (!append) {
    state.body = searchBody();
    state.file = $("image").files[0] || null;
    state.offset = 0;
    $("generated").hidden = true;
  }
  const body = Object.assign({}, state.body, { offset: state.offset });
  if (!body.collection) { message("No collection yet: ingest one with `pixseek ingest`.", true); return; }
  if (!body.q && !body.like && !state.file && !body.feedback) { browse(append); return; }
  if (!append) loadFacets();
  const seq = ++state.seq;
  setView("search");
  message("Searching…");
  $("dups").hidden = true;
  $("results").hidden = false;
  try {
    const result = await postSearch(body, state.file);
    if (seq !== state.seq) return;
    showHits(result.hits, append);
    state.offset = result.next_offset;
    $("more").hidden = result.next_offset === null;
    const shown = $("grid").children.length;
    const ended = result.ended_by ? ` · list ended by ${result.ended_by}` : "";
    message(`${shown} result${shown === 1 ? "" : "s"} for ${result.query}${ended}`);
  } catch (err) {
    if (seq === state.seq) message(err.message, true);
  }
}

function moreLikeThis(hit) {
  state.like = hit;
  $("q").value = "";
  $("image").value = "";
  $("like-bar").hidden = false;
  $("like-id").textContent = hit.source || hit.id;
  setImage($("like-thumb"), hit.thumbnail_url);
  search(false);
  window.scrollTo({ top: 0, behavior: "smooth" });
}

function clearLike() {
  state.like = null;
  $("like-bar").hidden = true;
}

// -- generative search ------------------------------------------------------------------------

function fraction(job) {
  const p = job.progress || {};
  if (job.finished) return 1;
  if (job.state === "GENERATING") {
    const total = Math.max(1, p.total || 1), steps = Math.max(1, p.steps || 1);
    const done = (p.done || 0) + ((p.batch || 0) * (p.step || 0)) / steps;
    return 0.05 + 0.85 * Math.min(1, done / total);
  }
  return { QUEUED: 0, STARTED: 0.01, LOADING: 0.03, EMBEDDING: 0.92, SEARCHING: 0.97 }[job.state] || 0.02;
}

function showGenerated(result) {
  const grid = $("generated-grid");
  grid.replaceChildren();
  (result.generated || []).forEach((g) => {
    const figure = el("figure");
    const img = el("img");
    img.alt = `generated image, seed ${g.seed}`;
    setImage(img, g.url);
    figure.append(img, el("figcaption", "muted", `seed ${g.seed}`));
    grid.appendChild(figure);
  });
  $("generated").hidden = grid.children.length === 0;
}

async function generate() {
  const prompt = $("q").value.trim();
  if (!prompt) { message("Type a description to generate reference images from.", true); return; }
  clearLike();
  const body = { prompt, collection: $("collection").value, where: filters(),
    limit: Number($("limit").value), n_images: 4 };
  try {
    const job = await api("jobs", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) });
    state.job = job.job_id;
    $("job").hidden = false;
    message("");
    follow(job.job_id);
  } catch (err) {
    message(err.message, true);
  }
}

async function follow(jobId) {
  while (state.job === jobId) {
    let job;
    try { job = await api(`jobs/${jobId}`); } catch (err) { message(err.message, true); break; }
    $("job-status").textContent = job.status;
    $("job-progress").value = fraction(job);
    if (job.finished) {
      if (job.state === "SUCCESS") {
        const result = await api(`jobs/${jobId}/result`);
        showGenerated(result);
        setView("search");
        showHits(result.hits, false);
        $("more").hidden = true;
        message(`${result.hits.length} results for "${result.query.prompt}" (${result.fusion} fusion)`);
      } else {
        message(job.error || job.status, job.state === "FAILURE");
      }
      state.job = null;
      setTimeout(() => { if (!state.job) $("job").hidden = true; }, 1500);
      break;
    }
    await new Promise((r) => setTimeout(r, 400));
  }
}

async function cancelJob() {
  if (!state.job) return;
  try { await api(`jobs/${state.job}`, { method: "DELETE" }); } catch (err) { message(err.message, true); }
}

// -- duplicates review --------------------------------------------------------------------------

function dupFigure(point, group) {
  const figure = el("figure", point.id === group.keep ? "card keep" : "card");
  const link = el("a", "pic");
  link.href = point.image_url;
  link.target = "_blank";
  link.rel = "noopener";
  const img = el("img");
  img.loading = "lazy";
  img.alt = point.source || point.id;
  setImage(img, point.thumbnail_url);
  link.appendChild(img);
  const caption = el("figcaption");
  if (point.id === group.keep) caption.appendChild(el("span", "score", "keep"));
  const size = point.width && point.height ? `${point.width}×${point.height}` : "";
  const distance = point.distance === null || point.distance === undefined ? "" : ` · d=${point.distance}`;
  caption.appendChild(el("span", "muted", size + distance));
  caption.appendChild(el("span", "source", point.source || point.id));
  figure.append(link, caption);
  return figure;
}

async function duplicates(append) {
  const collection = $("collection").value;
  if (!collection) { message("No collection yet: ingest one with `pixseek ingest`.", true); return; }
  if (!append) { state.dupOffset = 0; releaseBlobs(); $("dups-list").replaceChildren(); }
  $("results").hidden = true;
  $("generated").hidden = true;
  $("dups").hidden = false;
  message("Looking for duplicates…");
  const params = new URLSearchParams({ tier: $("dups-tier").value, limit: "20", offset: String(state.dupOffset || 0) });
  filters().forEach((w) => params.append("where", w));
  try {
    const report = await api(`collections/${encodeURIComponent(collection)}/duplicates?${params}`);
    report.groups.forEach((group) => {
      const section = el("section", "dup-group");
      section.appendChild(el("h2", "", `${group.size} pictures · keep: ${group.reason}`));
      const row = el("div", "dup-row");
      group.points.forEach((point) => row.appendChild(dupFigure(point, group)));
      section.appendChild(row);
      $("dups-list").appendChild(section);
    });
    state.dupOffset = report.next_offset;
    $("dups-more").hidden = report.next_offset === null;
    $("dups-summary").textContent = `${report.groups_total} ${report.tier} groups, ${report.duplicates} duplicates among ${report.points} pictures` +
      (report.unhashed ? ` · ${report.unhashed} without a hash (run pixseek duplicates --update-hashes)` : "");
    message("");
  } catch (err) {
    message(err.message, true);
  }
}

// -- start -------------------------------------------------------------------------------------

async function loadCollections() {
  try {
    const list = await api("collections");
    const select = $("collection");
    select.replaceChildren();
    list.forEach((c) => select.appendChild(new Option(`${c.name} (${c.points})`, c.name)));
    const saved = localStorage.getItem("pixseek.collection");
    if (saved && list.some((c) => c.name === saved)) select.value = saved;
    if (!list.length) message("No collections yet: ingest one with `pixseek ingest PATH -c NAME`.");
  } catch (err) {
    message(err.message, true);
  }
}

async function loadHealth() {
  try {
    const response = await fetch("health");
    const h = await response.json();
    const jobs = h.jobs.mode === "broker" ? "workers" : "in-process jobs";
    const model = h.model.clip.replace(/^local-dir:.*\//, "local-dir:…/");
    $("health").textContent = `${h.status} · ${h.store.backend} store · ${jobs} · ${model}`;
  } catch (err) {
    $("health").textContent = "server unreachable";
  }
}

$("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(false); });
$("more").addEventListener("click", () => (state.view === "browse" ? browse(true) : search(true)));
$("generate-btn").addEventListener("click", generate);
$("job-cancel").addEventListener("click", cancelJob);
$("like-clear").addEventListener("click", clearLike);
$("dups-btn").addEventListener("click", () => duplicates(false));
$("dups-more").addEventListener("click", () => duplicates(true));
$("dups-tier").addEventListener("change", () => duplicates(false));
$("collection").addEventListener("change", () => {
  localStorage.setItem("pixseek.collection", $("collection").value);
  switchCollection();
});
$("api-key").addEventListener("change", () => {
  localStorage.setItem(KEY, $("api-key").value.trim());
  loadCollections().then(landing);
});
// Start-up (loadHealth, loadCollections, the landing view) is in steer.js, loaded after this file.
