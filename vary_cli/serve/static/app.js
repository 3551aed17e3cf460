// vary serve's web page: upload documents, watch their pages arrive, read them rendered, download the result.
// Plain ES module, no build step. The server renders each page's HTML (tables, math as MathML) and sends it
// sanitized; this script only fetches, places and toggles. A token, when the server wants one, is kept in
// sessionStorage (or read from the URL fragment #token=...) and sent as a bearer header on every call.

const $ = (selector) => document.querySelector(selector);
let token = sessionStorage.getItem("vary-token") || "";
let view = "html";
let current = null; // {id, controller}

const fromFragment = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromFragment) {
  token = fromFragment;
  sessionStorage.setItem("vary-token", token);
  history.replaceState(null, "", location.pathname);
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    $("#token-form").hidden = false;
    throw new Error("this server needs a token: enter it above");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function showError(error) {
  $("#error").textContent = error ? String(error.message || error) : "";
  $("#error").hidden = !error;
}

async function loadModel() {
  try {
    const health = await (await fetch("/healthz")).json();
    $("#model").textContent = `${health.model} on ${health.device}`;
  } catch { /* the page still works */ }
}

async function upload(files) {
  if (!files.length) return;
  showError(null);
  if (current) current.controller.abort();
  const form = new FormData();
  for (const file of files) form.append("file", file, file.name);
  form.append("format", "md");
  try {
    const { job } = await (await api("/v1/convert", { method: "POST", body: form })).json();
    follow(job, files.length);
  } catch (error) {
    showError(error);
  }
}

function follow(job, documentCount) {
  const controller = new AbortController();
  current = { id: job, controller, documents: documentCount };
  $("#job").hidden = false;
  $("#pages").replaceChildren();
  $("#downloads").replaceChildren();
  $("#cancel").disabled = false;
  $("#state").textContent = "queued";
  readEvents(job, controller.signal).catch((error) => { if (!controller.signal.aborted) showError(error); });
}

// Server-sent events read with fetch (EventSource cannot send the bearer header).
async function readEvents(job, signal) {
  const response = await api(`/v1/jobs/${job}/events`, { signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const fields = Object.fromEntries(block.split("\n").filter((l) => !l.startsWith(":"))
        .map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 2)]));
      if (!fields.event) continue;
      const data = JSON.parse(fields.data);
      if (fields.event === "page") await addPage(job, data);
      if (fields.event === "done") finish(job, data);
      else await status(job);
    }
  }
}

async function status(job) {
  const s = await (await api(`/v1/jobs/${job}`)).json();
  $("#state").textContent = `${s.state}: ${s.pages_done} of ${s.pages_total} page(s)`;
}

async function addPage(job, event) {
  const [page, image] = await Promise.all([
    api(`/v1/jobs/${job}/documents/${event.document}/pages/${event.page}`).then((r) => r.json()),
    api(`/v1/jobs/${job}/documents/${event.document}/pages/${event.page}/image`).then((r) => r.blob()),
  ]);
  const card = document.createElement("article");
  card.className = "page";
  card.dataset.order = String(event.document * 100000 + event.page);
  const title = document.createElement("h2");
  title.className = "title";
  title.textContent = `${event.name} · page ${event.page}` + (event.finish_reason === "stop" ? "" : ` · ${event.finish_reason}`);
  const picture = document.createElement("img");
  picture.alt = `page ${event.page} of ${event.name}`;
  picture.src = URL.createObjectURL(image);
  const text = document.createElement("div");
  text.className = "text";
  card.page = page;
  card.append(title, picture, text);
  show(card);
  const later = [...$("#pages").children].find((c) => Number(c.dataset.order) > Number(card.dataset.order));
  $("#pages").insertBefore(card, later || null);
}

function show(card) {
  const text = card.querySelector(".text");
  if (view === "html") {
    text.innerHTML = card.page.html; // sanitized on the server (view.py); the page's CSP forbids inline scripts
  } else {
    const pre = document.createElement("pre");
    pre.textContent = card.page[view];
    text.replaceChildren(pre);
  }
  text.classList.toggle("failed", card.page.finish_reason === "error");
}

function finish(job, data) {
  $("#state").textContent = `${data.state}: ${data.pages_done} of ${data.pages_total} page(s)`;
  $("#cancel").disabled = true;
  if (data.state !== "done" && data.state !== "failed") return;
  for (let d = 0; d < current.documents; d++) {
    for (const format of ["md", "tex", "jsonl"]) {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.format = format;
      button.dataset.document = String(d);
      button.textContent = current.documents > 1 ? `${format} (${d + 1})` : format;
      button.addEventListener("click", () => download(job, d, format).catch(showError));
      $("#downloads").append(button);
    }
  }
}

async function download(job, documentIndex, format) {
  const response = await api(`/v1/jobs/${job}/result?format=${format}&document=${documentIndex}`);
  const name = decodeURIComponent((response.headers.get("Content-Disposition") || "").split("''")[1] || `result.${format}`);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
}

$("#cancel").addEventListener("click", async () => {
  if (!current) return;
  try { await api(`/v1/jobs/${current.id}`, { method: "DELETE" }); } catch (error) { showError(error); }
});

for (const button of document.querySelectorAll("[data-view]")) {
  button.addEventListener("click", () => {
    view = button.dataset.view;
    for (const other of document.querySelectorAll("[data-view]")) other.setAttribute("aria-pressed", String(other === button));
    for (const card of $("#pages").children) show(card);
  });
}

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("#token").value.trim();
  sessionStorage.setItem("vary-token", token);
  $("#token-form").hidden = true;
  showError(null);
});

$("#files").addEventListener("change", (event) => upload([...event.target.files]));
const drop = $("#drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  upload([...event.dataTransfer.files]);
});

loadModel();
