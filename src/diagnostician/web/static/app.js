/* The consultation page: vanilla JavaScript over this server's /v1 API. No network fetch elsewhere. */
"use strict";

const COMMON = ["E_53", "E_66", "E_201", "E_91", "E_181", "E_97", "E_151", "E_129", "E_148", "E_89", "E_155", "E_82", "E_45", "E_51"];
const LEVEL_TITLE = {
  emergency: "Seek emergency care now",
  urgent_24h: "See a doctor within 24 hours",
  see_doctor: "See a doctor",
  self_care: "Self-care",
};
const RANK = { emergency: 0, urgent_24h: 1, see_doctor: 2, self_care: 3 };

const $ = (id) => document.getElementById(id);
const state = { id: null, question: null, busy: false, ddxOpen: false, intake: null, findings: new Map(), resultNames: new Map() };
const KEY_STORE = "diagnostician.apiKey";
const TEXT_MAX = 5000;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else if (v !== false && v != null) node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

/* ------------------------------------------------------------ API key (session storage only) */

function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORE) || "";
  } catch (e) {
    return "";
  }
}

function setApiKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
  } catch (e) {
    /* storage unavailable: the key lasts until the page is left */
  }
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function askForKey(had) {
  $("settings").open = true;
  showError(had
    ? "The API key was not accepted. Please check it under Connection settings (API key) and press Use key."
    : "This server needs an API key. Please enter it under Connection settings (API key) and press Use key.");
  $("api-key").focus();
}

async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json", ...authHeaders() } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const data = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) {
    const err = new Error((data && (data.detail || data.title)) || `HTTP ${r.status}`);
    err.status = r.status;
    if (r.status === 401) {
      err.message = "An API key is needed.";
      err.handled = true;
      askForKey(!!apiKey());
    }
    throw err;
  }
  return data;
}

async function useKey(ev) {
  ev.preventDefault();
  setApiKey($("api-key").value.trim());
  showError("");
  if (!$("complaints").children.length) {
    try {
      await loadComplaints();
    } catch (e) {
      if (!e.handled) showError(`Could not load the list of complaints: ${e.message}`);
      return;
    }
  }
  $("settings").open = false;
  if ($("family").open) await refreshFamily();
  $("start-title").focus();
}

/* Report links: with a key they are fetched with it and saved from memory (a plain link cannot send it). */
async function downloadWithKey(ev) {
  if (!apiKey()) return;
  ev.preventDefault();
  const a = ev.currentTarget;
  try {
    const r = await fetch(a.getAttribute("href"), { headers: authHeaders() });
    if (r.status === 401) return askForKey(true);
    if (!r.ok) return showError(`Could not download the report (HTTP ${r.status}).`);
    const url = URL.createObjectURL(await r.blob());
    const tmp = el("a", { href: url, download: a.getAttribute("download") || "" });
    document.body.append(tmp);
    tmp.click();
    tmp.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (e) {
    showError(e.message || String(e));
  }
}

function showError(msg) {
  const e = $("error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

function setNotice(text) {
  if (text) {
    $("notice-text").textContent = text;
    $("summary-notice").textContent = text;
  }
}

function show(section) {
  for (const s of ["start", "ask", "summary"]) $(s).hidden = s !== section;
  $("ddx-panel").hidden = section !== "ask";
}

async function busy(fn) {
  if (state.busy) return;
  state.busy = true;
  document.body.dataset.busy = "1";
  document.querySelectorAll("button").forEach((b) => (b.disabled = true));
  try {
    showError("");
    await fn();
  } catch (e) {
    if (!e.handled) showError(e.message || String(e));
  } finally {
    state.busy = false;
    document.body.dataset.busy = "0";
    document.querySelectorAll("button").forEach((b) => (b.disabled = false));
    const next = $("next-btn");
    if (!next.hidden && next.dataset.needsChoice === "1") next.disabled = !document.querySelector("#controls input[type=radio]:checked");
  }
}

/* ------------------------------------------------------------ start: age, sex, complaint */

function complaintRadio(f, prefix) {
  const id = `${prefix}-${f.code}`;
  return el("label", { class: "choice", for: id },
    el("input", { type: "radio", name: "complaint", id, value: f.code }), el("span", { text: f.text }));
}

async function loadComplaints() {
  const data = await api("GET", "/v1/knowledge/findings?limit=500");
  const byCode = new Map(data.items.map((f) => [f.code, f]));
  state.findings = byCode;
  const box = $("complaints");
  box.replaceChildren(...COMMON.filter((c) => byCode.has(c)).map((c) => complaintRadio(byCode.get(c), "c")));
}

let searchTimer = null;
function onSearch() {
  clearTimeout(searchTimer);
  const q = $("complaint-search").value.trim();
  searchTimer = setTimeout(async () => {
    const box = $("complaint-results");
    if (!q) return box.replaceChildren();
    try {
      const data = await api("GET", `/v1/knowledge/findings?q=${encodeURIComponent(q)}&limit=40`);
      const items = data.items.filter((f) => f.type === "binary" && !f.antecedent && !COMMON.includes(f.code)).slice(0, 12);
      box.replaceChildren(...(items.length ? items.map((f) => complaintRadio(f, "s")) : [el("p", { class: "reason", text: "No matching complaint." })]));
    } catch (e) {
      if (!e.handled) showError(e.message);
    }
  }, 200);
}

/* ------------------------------------------------------------ free text: what was understood */

const SEX_WORD = { F: "female", M: "male" };

function findingWords(f) {
  let t = (f.text || f.code).trim();
  // A value read with it (a place, a kind): the knowledge pack's words for it, when they add something.
  const known = state.findings.get(f.code);
  const values = f.value == null ? [] : Array.isArray(f.value) ? f.value : [f.value];
  if (known && values.length && f.polarity === "present") {
    const labels = values.map((v) => (known.answers.find((a) => a.value === v) || {}).label).filter((l) => l && l.toLowerCase() !== t.toLowerCase());
    if (labels.length) t += ` (${labels.join(", ")})`;
  }
  if (f.polarity === "absent") return /^(no|not)\b/i.test(t) ? t : `no ${t}`;
  if (f.polarity === "uncertain") return `maybe ${t}`;
  return t;
}

/* The list of what the text said: age, sex, who it is about, each finding (entered, or still to be asked). */
function understoodItems(intake, preview) {
  const items = [];
  const about = [];
  if (intake.age != null) about.push(`${Math.round(intake.age * 10) / 10} years old`);
  if (intake.sex) about.push(SEX_WORD[intake.sex] || intake.sex);
  if (intake.proxy) about.push(intake.relation ? `asking for your ${intake.relation}` : "asking for someone else");
  if (about.length) items.push(el("li", { class: "about", text: about.join(", ") }));
  if (intake.duration_days != null) items.push(el("li", { class: "about", text: `for about ${Math.round(intake.duration_days * 10) / 10} day(s)` }));
  if (intake.temperature_c != null) items.push(el("li", { class: "about", text: `temperature ${intake.temperature_c} °C` }));
  for (const f of intake.findings || []) {
    const entered = preview || f.entered !== false;  // (a preview enters nothing yet)
    items.push(el("li", { class: entered ? "entered" : "unsure", "data-code": f.code, "data-polarity": f.polarity, "data-entered": String(entered) },
      el("span", { text: findingWords(f) }),
      entered ? null : el("span", { class: "unsure-note", text: " — not sure, I will ask" })));
  }
  for (const n of intake.notes || []) {
    const text = typeof n === "string" ? n : (n && (n.text || n.message || n.detail)) || "";
    if (text) items.push(el("li", { class: "note", text }));
  }
  return items;
}

function renderUnderstood(box, intake, title, preview) {
  if (!intake) {
    box.hidden = true;
    return box.replaceChildren();
  }
  const items = understoodItems(intake, preview);
  const nothing = !(intake.findings || []).length;
  box.replaceChildren(
    el("p", { class: "understood-title", text: title }),
    el("ul", {}, ...items),
    ...(nothing ? [el("p", { class: "reason", text: preview ? "No symptom recognised yet." : "I did not pick out a symptom from the text: I will ask." })] : []));
  box.hidden = false;
}

let previewTimer = null;
let previewSeq = 0;
function onStory() {
  const t = $("story").value;
  $("story-count").textContent = `${t.length} / ${TEXT_MAX}`;
  clearTimeout(previewTimer);
  const seq = ++previewSeq;
  if (!t.trim()) return renderUnderstood($("preview"), null);
  previewTimer = setTimeout(async () => {
    try {
      const reading = await api("POST", "/v1/parse", { text: t });
      if (seq === previewSeq && $("story").value.trim()) renderUnderstood($("preview"), reading, "So far I read:", true);
    } catch (e) {
      /* the preview is only a help: a failure here (other than a missing key) stays quiet */
    }
  }, 600);
}

async function onStart(ev) {
  ev.preventDefault();
  const text = $("story").value.trim();
  const age = Number($("age").value);
  const sex = document.querySelector("input[name=sex]:checked");
  const complaint = document.querySelector("input[name=complaint]:checked");
  const ageGiven = $("age").value !== "";
  if ((!text || ageGiven) && !(ageGiven && age >= 0 && age <= 120)) return showError("Please enter an age between 0 and 120."), $("age").focus();
  if (!text && !sex) return showError("Please choose female or male."), $("sex-F").focus();
  if (!text && !complaint) return showError("Please choose your main complaint, or describe it in your own words."), $("story").focus();
  if (text.length > TEXT_MAX) return showError(`Please shorten the description to ${TEXT_MAX} characters.`), $("story").focus();
  const body = {};
  if (ageGiven) body.age = age;
  if (sex) body.sex = sex.value;
  if (text) body.text = text;
  if (complaint) body.findings = { [complaint.value]: true };
  await busy(async () => {
    let c;
    try {
      c = await api("POST", "/v1/consultations", body);
    } catch (e) {
      if (text && (e.status === 422 || e.status === 400) && (!ageGiven || !sex)) {
        showError(`${e.message}. Please fill in your age and sex above.`);
        (ageGiven ? $("sex-F") : $("age")).focus();
        return;
      }
      throw e;
    }
    state.id = c.id;
    state.intake = c.intake || null;
    renderUnderstood($("understood"), state.intake, "I understood:", false);
    setNotice(c.notice);
    setBanner(c.red_flags, c.red_flags);
    await nextQuestion();
  });
}

/* ------------------------------------------------------------ banner and differential */

function setBanner(flags, fresh) {
  const banner = $("banner");
  if (!flags || !flags.length) {
    banner.hidden = true;
    return;
  }
  const level = flags.map((f) => f.level).sort((a, b) => RANK[a] - RANK[b])[0];
  banner.className = `banner ${level}`;
  $("banner-title").textContent = `Danger sign: ${LEVEL_TITLE[level] || level}`;
  $("banner-list").replaceChildren(...flags.map((f) => el("li", { text: f.advice })));
  banner.hidden = false;
  if (fresh && fresh.length) banner.dataset.fresh = "1";
}

function bars(list, items) {
  list.replaceChildren(...items.map((d) => {
    const pct = Math.round(d.probability * 1000) / 10;
    return el("li", { class: d.role },
      el("div", { class: "row" }, el("span", { text: d.name }), el("span", { text: `${pct}%` })),
      el("div", { class: "track", "aria-hidden": "true" }, el("div", { class: "fill", style: `width:${Math.max(pct, 0.5)}%` })));
  }));
}

async function refreshDdx() {
  if (!state.ddxOpen || !state.id) return;
  const a = await api("GET", `/v1/consultations/${state.id}/assessment`);
  bars($("ddx-list"), a.differential.slice(0, 8));
}

async function toggleDdx() {
  state.ddxOpen = !state.ddxOpen;
  $("ddx").hidden = !state.ddxOpen;
  $("ddx-toggle").setAttribute("aria-expanded", String(state.ddxOpen));
  $("ddx-toggle").textContent = state.ddxOpen ? "Hide differential" : "Show differential";
  try {
    await refreshDdx();
  } catch (e) {
    showError(e.message);
  }
}

/* ------------------------------------------------------------ questions */

async function nextQuestion() {
  const q = await api("GET", `/v1/consultations/${state.id}/question`);
  if (q.done) return summary();
  state.question = q.question;
  renderQuestion(q);
  await refreshDdx();
}

function renderQuestion(q) {
  const qq = q.question;
  show("ask");
  const ask = $("ask");
  ask.dataset.finding = qq.finding;
  ask.dataset.qid = qq.id;
  ask.dataset.type = qq.scale ? "scale" : qq.type;
  $("progress").textContent = `Question ${q.questions_asked + 1}`;
  $("understood").hidden = !state.intake || q.questions_asked > 0;
  $("qtext").textContent = qq.text;
  $("qreason").textContent = qq.reason ? `Why we ask: ${qq.reason}` : "";
  const next = $("next-btn");
  next.hidden = qq.type === "binary";
  next.dataset.needsChoice = "0";
  const choices = qq.answers.filter((a) => a.value !== null);
  let controls;
  if (qq.type === "binary") {
    controls = el("div", { class: "yesno", role: "group", "aria-labelledby": "qtext" },
      el("button", { type: "button", id: "yes-btn", class: "primary", onclick: () => answer(true), text: "Yes" }),
      el("button", { type: "button", id: "no-btn", onclick: () => answer(false), text: "No" }));
  } else if (qq.scale) {
    const nums = choices.map((a) => Number(a.value));
    const min = Math.min(...nums), max = Math.max(...nums);
    const out = el("output", { id: "scale-value", for: "scale", text: String(min) });
    const input = el("input", { type: "range", id: "scale", name: "scale", min, max, step: 1, value: min,
      "aria-valuetext": String(min), oninput: (e) => { out.textContent = e.target.value; e.target.setAttribute("aria-valuetext", e.target.value); } });
    controls = el("div", {},
      el("label", { for: "scale" }, `Choose a number from ${min} to ${max}`),
      el("div", { class: "scale" }, input, out),
      el("div", { class: "scale-ends", "aria-hidden": "true" }, el("span", { text: `${min}` }), el("span", { text: `${max}` })));
  } else {
    const multi = qq.type === "multi";
    const list = el("div", { class: "choices" + (choices.length > 10 ? " scroll" : ""), id: "options" });
    choices.forEach((a, i) => {
      const id = `opt-${i}`;
      list.append(el("label", { class: "choice", for: id },
        el("input", { type: multi ? "checkbox" : "radio", name: "opt", id, value: a.value,
          onchange: multi ? null : () => { next.disabled = false; } }),
        el("span", { text: a.label })));
    });
    const set = el("fieldset", { class: "field" }, el("legend", { text: multi ? "Choose all that apply (none is fine)" : "Choose one" }));
    if (choices.length > 10) {
      const filter = el("input", { type: "search", id: "opt-filter", autocomplete: "off", placeholder: "Type to filter",
        oninput: (e) => {
          const t = e.target.value.trim().toLowerCase();
          list.querySelectorAll("label.choice").forEach((l) => { l.hidden = t !== "" && !l.textContent.toLowerCase().includes(t); });
        } });
      set.append(el("label", { for: "opt-filter", text: "Filter the list" }), filter);
    }
    set.append(list);
    controls = set;
    if (!multi) {
      next.dataset.needsChoice = "1";
      next.disabled = true;
    }
  }
  $("controls").replaceChildren(controls);
  $("qtext").focus();
}

function currentValue() {
  const qq = state.question;
  if (qq.scale) return $("scale").value;
  if (qq.type === "multi") return [...document.querySelectorAll("#controls input[type=checkbox]:checked")].map((i) => i.value);
  const r = document.querySelector("#controls input[type=radio]:checked");
  return r ? r.value : undefined;
}

async function answer(value) {
  if (value === undefined) return showError("Please choose an answer, or press Don't know.");
  await busy(async () => {
    const a = await api("POST", `/v1/consultations/${state.id}/answers`, { question_id: state.question.id, value });
    setNotice(a.notice);
    if (a.new_red_flags.length || a.triage.red_flags.length) setBanner(a.triage.red_flags, a.new_red_flags);
    await nextQuestion();
  });
}

async function back() {
  await busy(async () => {
    try {
      await api("POST", `/v1/consultations/${state.id}/undo`);
    } catch (e) {
      if (e.status === 409) {
        showError("There is no earlier answer to go back to.");
        return;
      }
      throw e;
    }
    const t = await api("GET", `/v1/consultations/${state.id}/triage`);
    setBanner(t.red_flags, []);
    await nextQuestion();
  });
}

/* ------------------------------------------------------------ summary */

async function summary() {
  const a = await api("GET", `/v1/consultations/${state.id}/assessment`);
  renderAssessment(a);
  resultsError("");
  $("results-out").hidden = true;
  $("results-out").replaceChildren();
  $("results-text").value = "";
  show("summary");
  $("summary-title").focus();
}

/* Suggested examinations and tests, each with why (information a result would bring, or the share it bears on). */
function renderTests(tests) {
  const items = (tests && tests.suggested) || [];
  state.resultNames = new Map(items.filter((t) => t.result).map((t) => [t.result, t.name]));
  $("tests-box").hidden = !items.length;
  $("tests-list").replaceChildren(...items.map((t) => {
    const names = (t.conditions || []).slice(0, 3).map((c) => c[0]).join(", ");
    const why = t.bits != null
      ? `a result would tell ${t.bits.toFixed(2)} bits about the diagnosis` + (names ? `; it bears on ${names}` : "")
      : `bears on ${Math.round(t.mass * 100)}% of the differential: ${names}`;
    return el("li", { "data-id": t.id, "data-result": t.result || null },
      el("span", { text: t.name }), el("span", { class: "kind", text: ` (${t.kind})` }), el("span", { class: "why", text: ` — ${why}` }));
  }));
  $("tests-basis").textContent = items.length ? tests.basis || "" : "";
}

/* The assessment (from GET .../assessment or POST .../results): triage, differential, explanations, tests, reports. */
function renderAssessment(a) {
  setNotice(a.notice);
  setBanner(a.triage.red_flags, []);
  const t = a.triage;
  $("triage").className = `triage ${t.level}`;
  $("triage").replaceChildren(
    el("h3", { text: LEVEL_TITLE[t.level] || t.level }),
    el("p", { text: t.advice }),
    ...(t.reasons.length ? [el("ul", {}, ...t.reasons.map((r) => el("li", { text: r })))] : []));
  bars($("summary-ddx"), a.differential.slice(0, 10));
  $("explanations").replaceChildren(...a.explanations.map((x) => el("p", { class: "expl", text: x.text })));
  const base = `/v1/consultations/${state.id}`;
  $("report-html").href = `${base}/report?format=html`;
  $("report-html").setAttribute("download", `consultation-${state.id}.html`);
  $("report-md").href = `${base}/report?format=markdown`;
  $("report-md").setAttribute("download", `consultation-${state.id}.md`);
  $("report-fhir").href = `${base}/fhir`;
  $("report-fhir").setAttribute("download", `consultation-${state.id}.fhir.json`);
  $("summary").dataset.stopReason = a.stop_reason;
  renderTests(a.tests);
}

/* ------------------------------------------------------------ examination and test results (after the inquiry) */

const RESULT_WORDS = { true: "positive / abnormal", false: "negative / normal" };

function resultsError(msg) {
  const e = $("results-error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

/* A result's test in words: the suggested test's name, else its text without the answer ("Was the troponin raised: yes"). */
function resultName(r) {
  const named = state.resultNames && state.resultNames.get(r.finding);
  if (named) return named;
  const t = (r.text || r.finding).replace(/:\s*[^:]*$/, "").replace(/\?$/, "").trim();
  return t.replace(/^(was|were|is|are|did|does|has|have)\s+(the\s+)?/i, "") || r.finding;
}

function renderResults(results, names) {
  const box = $("results-out");
  const entered = (results && results.entered) || [];
  const unread = (results && results.uninterpreted) || [];
  const lines = [];
  if (entered.length) {
    lines.push(el("p", { class: "entered", text: "Entered: " + entered.map((r) => `${names.get(r.finding) || resultName(r)} → ${RESULT_WORDS[r.value] || "not known"}`).join("; ") }));
  }
  if (unread.length) lines.push(el("p", { class: "uninterpreted", text: `Recorded, cannot interpret: ${unread.join(", ")}` }));
  box.replaceChildren(...lines);
  box.hidden = !lines.length;
}

async function enterResults(ev) {
  ev.preventDefault();
  const text = $("results-text").value.trim();
  resultsError("");
  if (!text) return resultsError("Please name the test and its result, e.g. rapid strep test positive."), $("results-text").focus();
  if (text.length > TEXT_MAX) return resultsError(`Please shorten the results to ${TEXT_MAX} characters.`), $("results-text").focus();
  await busy(async () => {
    const names = state.resultNames || new Map();  // the tests suggested before these results
    let a;
    try {
      a = await api("POST", `/v1/consultations/${state.id}/results`, { text });
    } catch (e) {
      if (e.handled) throw e;
      resultsError(e.message || String(e));
      $("results-text").focus();
      return;
    }
    renderAssessment(a);
    const fresh = (a.results && a.results.entered || []).flatMap((r) => r.new_red_flags || []);
    if (fresh.length) setBanner(a.triage.red_flags, fresh);
    renderResults(a.results, names);
    $("results-text").value = "";
  });
}

function restart() {
  state.id = null;
  state.question = null;
  state.intake = null;
  renderUnderstood($("understood"), null);
  renderUnderstood($("preview"), null);
  setBanner([], []);
  showError("");
  $("start-form").reset();
  $("complaint-results").replaceChildren();
  $("story-count").textContent = `0 / ${TEXT_MAX}`;
  show("start");
  $("start-title").focus();
}

/* ------------------------------------------------------------ family record (members, diary, plots) */

const family = { loaded: false, selected: null, vitals: [] };

function familyError(msg) {
  const e = $("family-error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

/* Run one family action: its buttons are disabled meanwhile; a missing key is asked for by api() itself. */
async function familyDo(fn) {
  const box = $("family");
  if (box.dataset.busy === "1") return;
  box.dataset.busy = "1";
  const buttons = [...box.querySelectorAll("button")];
  buttons.forEach((b) => (b.disabled = true));
  familyError("");
  try {
    await fn();
  } catch (e) {
    if (!e.handled) familyError(e.message || String(e));
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    box.dataset.busy = "0";
  }
}

function ageWords(years) {
  if (years < 2) return `${Math.floor(years * 12)} months`;
  return `${Math.floor(years)} years`;
}

function renderMembers(members) {
  const list = $("members");
  if (!members.length) return list.replaceChildren(el("li", { class: "reason", text: "No member yet: add one below." }));
  list.replaceChildren(...members.map((m) => el("li", { "data-id": m.id },
    el("button", { type: "button", class: "member-btn", "aria-pressed": String(m.id === family.selected), onclick: () => familyDo(() => selectMember(m)), text: m.name }),
    el("span", { class: "about", text: `${ageWords(m.age_now)}, ${SEX_WORD[m.sex] || m.sex}` }))));
}

async function loadVitals() {
  if (family.vitals.length) return;
  family.vitals = await api("GET", "/v1/household/vitals");
  $("vital-code").replaceChildren(...family.vitals.map((v) => el("option", { value: v.code, text: `${v.label} (${v.unit})` })));
  vitalHint();
}

function vitalHint() {
  const v = family.vitals.find((x) => x.code === $("vital-code").value);
  $("vital-value").placeholder = v ? `e.g. ${v.example}` : "";
}

async function refreshFamily() {
  await familyDo(async () => {
    await loadVitals();
    const members = await api("GET", "/v1/household/members");
    if (family.selected && !members.some((m) => m.id === family.selected)) {
      family.selected = null;
      $("member-view").hidden = true;
    }
    renderMembers(members);
    family.loaded = true;
    if (family.selected) await showMember();
  });
}

async function selectMember(m) {
  family.selected = m.id;
  $("member-title").textContent = m.name;
  document.querySelectorAll("#members .member-btn").forEach((b) => b.setAttribute("aria-pressed", String(b.parentElement.dataset.id === m.id)));
  await showMember();
  $("member-title").focus();
}

async function showMember() {
  const base = `/v1/household/members/${encodeURIComponent(family.selected)}`;
  const [entries, plots] = await Promise.all([api("GET", `${base}/diary`), api("GET", `${base}/plots`)]);
  const rows = entries.slice().reverse().map((e) => el("tr", { "data-kind": e.kind },
    el("td", { text: new Date(e.at).toLocaleString() }),
    el("td", { class: e.outside_normal ? "abnormal" : null, text: e.outside_normal ? `${e.text} (outside the usual range)` : e.text }),
    el("td", { text: e.note || "" })));
  $("diary-rows").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "3", class: "reason", text: "No entry yet." }))]));
  // The SVG documents are made by this server (user text in them is escaped there): inserted as markup.
  $("plots").replaceChildren(...plots.map((p) => {
    const fig = el("figure", { "data-index": String(p.index) });
    fig.innerHTML = p.svg;
    return fig;
  }));
  if (!plots.length) $("plots").append(el("p", { class: "reason", text: "Readings and scored symptoms are plotted here." }));
  $("member-view").hidden = false;
}

async function addMember(ev) {
  ev.preventDefault();
  const name = $("member-name").value.trim();
  const sex = document.querySelector("input[name=member-sex]:checked");
  const born = $("member-birth").value;
  if (!name) return familyError("Please enter a name."), $("member-name").focus();
  if (!sex) return familyError("Please choose female or male."), $("member-sex-F").focus();
  if (!born) return familyError("Please enter the birth date."), $("member-birth").focus();
  await familyDo(async () => {
    const m = await api("POST", "/v1/household/members", { name, sex: sex.value, birth_date: born });
    $("member-form").reset();
    renderMembers(await api("GET", "/v1/household/members"));
    await selectMember(m);
  });
}

async function addEntry(body, form) {
  if (!family.selected) return familyError("Please choose a member first.");
  await familyDo(async () => {
    await api("POST", `/v1/household/members/${encodeURIComponent(family.selected)}/diary`, body);
    form.reset();
    vitalHint();
    await showMember();
  });
}

function addReading(ev) {
  ev.preventDefault();
  const value = $("vital-value").value.trim();
  if (!value) return familyError("Please enter the value of the reading."), $("vital-value").focus();
  return addEntry({ kind: "vital", code: $("vital-code").value, value }, $("reading-form"));
}

function addSymptom(ev) {
  ev.preventDefault();
  const name = $("symptom-name").value.trim();
  const severity = $("symptom-severity").value.trim();
  if (!name) return familyError("Please name the symptom."), $("symptom-name").focus();
  const body = { kind: "symptom", code: name };
  if (severity !== "") body.severity = severity;
  return addEntry(body, $("symptom-form"));
}

function onFamilyToggle() {
  if ($("family").open && !family.loaded) refreshFamily();
}

document.addEventListener("DOMContentLoaded", () => {
  $("start-form").addEventListener("submit", onStart);
  $("complaint-search").addEventListener("input", onSearch);
  $("answer-form").addEventListener("submit", (ev) => { ev.preventDefault(); answer(currentValue()); });
  $("dontknow-btn").addEventListener("click", () => answer(null));
  $("back-btn").addEventListener("click", back);
  $("ddx-toggle").addEventListener("click", toggleDdx);
  $("restart-btn").addEventListener("click", restart);
  $("results-form").addEventListener("submit", enterResults);
  $("story").addEventListener("input", onStory);
  $("key-form").addEventListener("submit", useKey);
  $("api-key").value = apiKey();
  for (const id of ["report-html", "report-md", "report-fhir"]) $(id).addEventListener("click", downloadWithKey);
  $("family").addEventListener("toggle", onFamilyToggle);
  $("member-form").addEventListener("submit", addMember);
  $("reading-form").addEventListener("submit", addReading);
  $("symptom-form").addEventListener("submit", addSymptom);
  $("vital-code").addEventListener("change", vitalHint);
  loadComplaints().catch((e) => { if (!e.handled) showError(`Could not load the list of complaints: ${e.message}`); });
});
