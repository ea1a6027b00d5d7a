// pixseek web page, part two (loaded after app.js, sharing its globals): the landing view that
// browses the collection before any query, facets as clickable filters, the detail view of one
// image, relevance-feedback marks, keyboard navigation of the grid, and start-up.
"use strict";

const MAX_MARKS = 32; // per kind: the API's limit
const FACET_KEYS = { labels: "label", formats: "format", cameras: "camera" };
const FACET_TITLES = { labels: "Labels", formats: "Formats", cameras: "Cameras", years: "Years" };

function when(payload) {
  const t = payload.taken || (payload.mtime ? new Date(payload.mtime * 1000).toISOString() : "");
  return String(t).slice(0, 10);
}

// "browse" (no query) or "search": the cards' score line and the browse-order box follow it.
function setView(view) {
  state.view = view;
  document.body.dataset.view = view;
}

function collectionPath(rest) {
  return `collections/${encodeURIComponent($("collection").value)}/${rest}`;
}

// -- landing view: the collection newest first, before any query ---------------------------

async function browse(append) {
  if (!$("collection").value) {
    message("No collections yet: ingest one with `pixseek ingest PATH -c NAME`.");
    return;
  }
  if (!append) { state.browseOffset = 0; loadFacets(); }
  const seq = ++state.seq;
  setView("browse");
  $("dups").hidden = true;
  $("results").hidden = false;
  $("generated").hidden = true;
  const params = new URLSearchParams({
    order: $("order").value, limit: $("limit").value, offset: String(state.browseOffset || 0),
  });
  const where = filters();
  where.forEach((w) => params.append("where", w));
  message("Loading…");
  try {
    const page = await api(collectionPath(`browse?${params}`));
    if (seq !== state.seq) return;
    showHits(page.hits, append);
    state.browseOffset = page.next_offset;
    $("more").hidden = page.next_offset === null;
    const shown = $("grid").children.length;
    message(`Browsing ${shown} picture${shown === 1 ? "" : "s"}, ${$("order").value} first` +
      (where.length ? ` · ${where.join(" AND ")}` : "") + " · type a query to search");
  } catch (err) {
    if (seq === state.seq) message(err.message, true);
  }
}

// The grid again for the current filters: the search when there is one, else the browse view.
function refresh() {
  if (state.view === "search" && state.body) search(false);
  else browse(false);
}

// -- facets: counts for the current filter; a click adds a filter chip ----------------------

function quoteValue(value) {
  if (!/^\s|\s$|[,()"']/.test(value)) return value;
  return value.includes('"') ? `'${value}'` : `"${value}"`;
}

function facetChip(group, value) {
  if (group === "years") {
    const next = Number(value) + 1;
    return { text: `year ${value}`, where: [`taken>=${value}-01-01`, `taken<${next}-01-01`] };
  }
  const key = FACET_KEYS[group];
  return { text: `${key}=${value}`, where: [`${key}=${quoteValue(value)}`] };
}

async function loadFacets() {
  if (!$("collection").value) return;
  const seq = (state.facetSeq = (state.facetSeq || 0) + 1);
  const params = new URLSearchParams();
  filters().forEach((w) => params.append("where", w));
  try {
    const data = await api(collectionPath(`facets?${params}`));
    if (seq === state.facetSeq) renderFacets(data);
  } catch (err) {
    if (seq !== state.facetSeq) return;
    $("matching").textContent = "";
    $("facet-groups").replaceChildren(el("p", "muted", err.message));
  }
}

function renderFacets(data) {
  const n = data.matching;
  $("matching").textContent = `${n} picture${n === 1 ? "" : "s"} match`;
  const groups = $("facet-groups");
  groups.replaceChildren();
  const active = new Set(state.chips.map((c) => c.text));
  ["labels", "years", "formats", "cameras"].forEach((group) => {
    const counts = (data.facets || {})[group] || {};
    const entries = Object.entries(counts);
    if (!entries.length) return;
    if (group === "years") entries.sort((a, b) => b[0].localeCompare(a[0]));
    else entries.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const section = el("section", "facet");
    const cut = (data.facets_truncated || []).includes(group) ? " (most frequent)" : "";
    section.appendChild(el("h3", "", FACET_TITLES[group] + cut));
    const list = el("ul");
    entries.forEach(([value, count]) => {
      const chip = facetChip(group, value);
      const button = el("button", "facet-value");
      button.type = "button";
      button.dataset.facet = group;
      button.dataset.value = value;
      button.setAttribute("aria-label", `filter ${chip.text}: ${count} pictures`);
      button.setAttribute("aria-pressed", String(active.has(chip.text)));
      button.append(el("span", "value", value), el("span", "count", String(count)));
      button.addEventListener("click", () => addChip(chip));
      const item = el("li");
      item.appendChild(button);
      list.appendChild(item);
    });
    section.appendChild(list);
    groups.appendChild(section);
  });
}

function addChip(chip) {
  if (!state.chips.some((c) => c.text === chip.text)) state.chips.push(chip);
  renderChips();
  refresh();
}

function renderChips() {
  const box = $("chips");
  box.replaceChildren();
  state.chips.forEach((chip, i) => {
    const button = el("button", "chip", `${chip.text} ✕`);
    button.type = "button";
    button.setAttribute("aria-label", `remove filter ${chip.text}`);
    button.addEventListener("click", () => {
      state.chips.splice(i, 1);
      renderChips();
      refresh();
    });
    box.appendChild(button);
  });
  box.hidden = state.chips.length === 0;
}

// -- relevance feedback: marks kept here, sent with every search until cleared --------------

function marked() {
  const out = { good: [], bad: [] };
  state.marks.forEach((kind, id) => out[kind].push(id));
  return out;
}

function markButton(hit, kind) {
  const good = kind === "good";
  const button = el("button", `mark ${kind}`, good ? "✓" : "✗");
  button.type = "button";
  button.dataset.mark = kind;
  button.setAttribute("aria-label", good ? "mark good" : "mark bad");
  button.title = good ? "Good: more like this (g)" : "Bad: less like this (b)";
  button.addEventListener("click", () => toggleMark(hit.id, kind));
  return button;
}

function toggleMark(id, kind) {
  if (state.marks.get(id) === kind) state.marks.delete(id);
  else if (marked()[kind].length >= MAX_MARKS) {
    message(`At most ${MAX_MARKS} ${kind} marks; clear some first.`, true);
    return;
  } else state.marks.set(id, kind);
  document.querySelectorAll(".card").forEach(paintMarks);
  paintDetailMarks();
  renderMarks();
}

function paintMarks(figure) {
  const kind = state.marks.get(figure.dataset.id);
  figure.classList.toggle("marked-good", kind === "good");
  figure.classList.toggle("marked-bad", kind === "bad");
  figure.querySelectorAll("button.mark").forEach((b) =>
    b.setAttribute("aria-pressed", String(b.dataset.mark === kind)));
}

function renderMarks() {
  const m = marked();
  const n = m.good.length + m.bad.length;
  $("marks").textContent = n ? `${n} marked: ${m.good.length} good, ${m.bad.length} bad`
    : "No marks: ✓ good / ✗ bad (g/b) on results, then re-rank";
  $("rerank").disabled = n === 0;
  $("clear-marks").disabled = n === 0;
}

function clearMarks() {
  state.marks.clear();
  document.querySelectorAll(".card").forEach(paintMarks);
  renderMarks();
  if (state.view === "search" && state.body && state.body.feedback) search(false);
}

// -- detail view ---------------------------------------------------------------------------

function fieldText(key, value) {
  if (key === "mtime" && typeof value === "number") {
    return `${new Date(value * 1000).toISOString()} (${value})`;
  }
  if (Array.isArray(value)) return value.map((v) => (typeof v === "object" ? JSON.stringify(v) : v)).join(", ");
  if (value !== null && typeof value === "object") return JSON.stringify(value);
  return String(value);
}

async function openDetail(id, origin) {
  if (!$("detail").open) state.detailOrigin = origin || document.activeElement;
  try {
    const point = await api(collectionPath(`points/${encodeURIComponent(id)}`));
    const payload = point.payload || {};
    state.detail = point;
    $("detail-title").textContent = payload.source || point.id;
    $("detail-link").href = point.image_url;
    $("detail-img").alt = payload.source || point.id;
    setImage($("detail-img"), point.image_url);
    const fields = $("detail-fields");
    fields.replaceChildren();
    Object.keys(payload).sort().filter((k) => k !== "ocr").forEach((key) => {
      fields.append(el("dt", "", key), el("dd", "", fieldText(key, payload[key])));
    });
    fields.append(el("dt", "", "id"), el("dd", "", point.id));
    const ocr = typeof payload.ocr === "string" ? payload.ocr.trim() : "";
    $("detail-ocr-box").hidden = !ocr;
    $("detail-ocr").replaceChildren(ocr ? ocrText(ocr) : "");
    const dups = $("detail-dups");
    dups.replaceChildren();
    point.duplicates.forEach((dup) => dups.appendChild(miniCard(dup)));
    $("detail-dups-none").hidden = point.duplicates.length > 0;
    paintDetailMarks();
    if (!$("detail").open) $("detail").showModal();
    $("detail-close").focus();
  } catch (err) {
    message(err.message, true);
  }
}

function miniCard(hit) {
  const button = el("button", "mini");
  button.type = "button";
  const label = hit.score >= 0.99999 ? "same bytes" : `similarity ${hit.score.toFixed(3)}`;
  button.setAttribute("aria-label", `open ${hit.source || hit.id} (${label})`);
  const img = el("img");
  img.alt = "";
  setImage(img, hit.thumbnail_url);
  button.append(img, el("span", "muted", `${hit.source || hit.id} · ${label}`));
  button.addEventListener("click", () => openDetail(hit.id));
  return button;
}

function paintDetailMarks() {
  if (!state.detail) return;
  const kind = state.marks.get(state.detail.id);
  $("detail-good").setAttribute("aria-pressed", String(kind === "good"));
  $("detail-bad").setAttribute("aria-pressed", String(kind === "bad"));
}

function detailMoreLikeThis() {
  const point = state.detail;
  $("detail").close();
  moreLikeThis({ id: point.id, source: point.payload.source, thumbnail_url: point.thumbnail_url });
}

// -- keyboard: arrows move across the grid, Enter opens, g/b mark ---------------------------

function columns(cards) {
  const top = cards[0].offsetTop;
  const n = cards.findIndex((c) => c.offsetTop !== top);
  return n < 1 ? cards.length : n;
}

function gridKey(e) {
  const card = e.target;
  if (!card.classList || !card.classList.contains("card") || e.altKey || e.ctrlKey || e.metaKey) return;
  const cards = [...$("grid").children];
  const i = cards.indexOf(card);
  const cols = columns(cards);
  const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -cols, ArrowDown: cols,
    Home: -i, End: cards.length - 1 - i }[e.key];
  if (step !== undefined) {
    e.preventDefault();
    cards[Math.max(0, Math.min(cards.length - 1, i + step))].focus();
  } else if (e.key === "Enter") {
    e.preventDefault();
    openDetail(card.dataset.id, card);
  } else if (e.key === "g" || e.key === "b") {
    toggleMark(card.dataset.id, e.key === "g" ? "good" : "bad");
  }
}

function switchCollection() {
  state.chips = [];
  state.marks.clear();
  state.body = null;
  clearLike();
  renderChips();
  renderMarks();
  browse(false);
}

async function landing() {
  renderChips();
  renderMarks();
  if ($("collection").value) await browse(false);
}

$("grid").addEventListener("keydown", gridKey);
$("order").addEventListener("change", () => browse(false));
$("rerank").addEventListener("click", () => search(false));
$("clear-marks").addEventListener("click", clearMarks);
$("detail-close").addEventListener("click", () => $("detail").close());
$("detail-like").addEventListener("click", detailMoreLikeThis);
$("detail-good").addEventListener("click", () => toggleMark(state.detail.id, "good"));
$("detail-bad").addEventListener("click", () => toggleMark(state.detail.id, "bad"));
$("detail").addEventListener("close", () => {
  releaseDetail();
  const origin = state.detailOrigin;
  if (origin && origin.isConnected) origin.focus();
});
$("diverse").addEventListener("change", () => { $("diversity").disabled = !$("diverse").checked; });

function releaseDetail() {
  $("detail-img").removeAttribute("src");
}

loadHealth();
loadCollections().then(landing);
