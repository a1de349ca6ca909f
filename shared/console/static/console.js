// Mailpipe console: the live audience count on the new-campaign form and the live template
// preview. Both only improve pages that work without scripts (their forms post as well).
"use strict";

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

function audienceCount() {
  const form = document.getElementById("campaign-form");
  const out = document.getElementById("audience-count");
  if (!form || !out) return;
  const update = debounce(async () => {
    const params = new URLSearchParams(new FormData(form));
    params.delete("csrf_token");
    out.textContent = "Counting…";
    try {
      const answer = await fetch(out.dataset.countUrl + "?" + params.toString(),
                                 { credentials: "same-origin", headers: { Accept: "application/json" } });
      const body = await answer.json();
      out.textContent = answer.ok ? body.text : body.error;
      out.classList.toggle("error", !answer.ok);
    } catch (err) {
      out.textContent = "The count is not available right now.";
    }
  }, 500);
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  update();
}

function templatePreview() {
  const form = document.getElementById("template-form");
  if (!form) return;
  const frames = document.querySelectorAll("iframe.draft-preview");
  const summary = document.getElementById("draft-summary");
  const problems = document.getElementById("draft-problems");
  const update = debounce(async () => {
    const body = new URLSearchParams();
    body.set("source", form.elements.source.value);
    body.set("sample", form.elements.sample.value);
    try {
      const answer = await fetch(form.dataset.draftUrl, {
        method: "POST", credentials: "same-origin", body,
        headers: { "X-CSRF-Token": form.elements.csrf_token.value, Accept: "application/json" },
      });
      const draft = await answer.json();
      summary.textContent = draft.summary;
      summary.className = draft.ok ? "muted" : "error";
      problems.replaceChildren(...draft.problems.map((p) => {
        const item = document.createElement("li");
        item.className = "error";
        item.dataset.file = p.file || "";
        item.dataset.line = p.line || "";
        item.textContent = p.message;
        return item;
      }));
      if (draft.html) frames.forEach((f) => { f.srcdoc = draft.html; });
    } catch (err) {
      summary.textContent = "The preview is not available right now.";
    }
  }, 700);
  form.elements.source.addEventListener("input", update);
  form.elements.sample.addEventListener("change", update);
}

document.addEventListener("DOMContentLoaded", () => { audienceCount(); templatePreview(); });
