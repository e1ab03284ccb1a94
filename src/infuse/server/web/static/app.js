// infuse web UI: the two things plain HTML and htmx do not do here: the chat streams its answer from
// the OpenAI-compatible route, and background jobs report progress over server-sent events.
// Model text is only ever set as textContent (never innerHTML).
(() => {
  "use strict";
  const csrf = () => document.body.dataset.csrf || "";

  function toast(message) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
    clearTimeout(box._timer);
    box._timer = setTimeout(() => { box.hidden = true; }, 8000);
  }

  function errorMessage(text, fallback) {
    try { return JSON.parse(text).error.message || fallback; } catch (_) { return fallback; }
  }

  document.addEventListener("htmx:responseError", (event) => {
    const xhr = event.detail.xhr;
    toast(errorMessage(xhr.responseText, `${xhr.status} ${xhr.statusText}`));
  });
  document.addEventListener("htmx:sendError", () => toast("The server could not be reached."));

  // --- chat --------------------------------------------------------------------------------------

  const CITATION = /\[(\d+(?:\s*,\s*\d+)*)\]/g;

  function sourceUrl(source) {
    return `/ui/documents/${encodeURIComponent(source.doc_id)}?chunk=${encodeURIComponent(source.chunk_id)}#cited`;
  }

  // The answer text with [n] markers as links to source n (DOM nodes, no HTML parsing).
  function renderText(element, text, sources) {
    const byNumber = new Map((sources || []).map((s) => [s.number, s]));
    element.replaceChildren();
    let position = 0;
    for (const match of text.matchAll(CITATION)) {
      element.append(text.slice(position, match.index));
      element.append("[");
      match[1].split(",").forEach((raw, i) => {
        if (i) element.append(", ");
        const number = parseInt(raw.trim(), 10);
        const source = byNumber.get(number);
        if (source) {
          const link = document.createElement("a");
          link.className = "cite";
          link.href = sourceUrl(source);
          link.title = source.source_path;
          link.textContent = String(number);
          element.append(link);
        } else {
          element.append(raw.trim());
        }
      });
      element.append("]");
      position = match.index + match[0].length;
    }
    element.append(text.slice(position));
  }

  function renderSources(article, sources, labels) {
    const details = document.createElement("details");
    details.className = "sources";
    details.open = true;
    const summary = document.createElement("summary");
    summary.textContent = labels.sources;
    const list = document.createElement("ol");
    if (!sources.length) {
      const item = document.createElement("li");
      item.className = "muted";
      item.textContent = labels.nosources;
      list.append(item);
    }
    for (const source of sources) {
      const item = document.createElement("li");
      item.value = source.number;
      const link = document.createElement("a");
      link.className = "source";
      link.href = sourceUrl(source);
      link.title = source.source_path;
      const name = source.source_path.split("/").pop();
      link.textContent = name + (source.page ? " · " + labels.page.replace("{page}", source.page) : "");
      const snippet = document.createElement("span");
      snippet.className = "snippet";
      snippet.textContent = source.text.slice(0, 160) + (source.text.length > 160 ? "…" : "");
      item.append(link, " ", snippet);
      list.append(item);
    }
    details.append(summary, list);
    article.append(details);
  }

  function answerBox(container, kind, label, thinking) {
    const article = document.createElement("article");
    article.className = `answer ${kind} streaming`;
    article.setAttribute("aria-label", label);
    article.setAttribute("aria-busy", "true");
    const heading = document.createElement("h3");
    heading.className = "label";
    heading.textContent = label;
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = thinking;
    article.append(heading, text);
    article.dataset.deltas = "0";
    container.append(article);
    return { article, text };
  }

  // One streamed answer from /v1/chat/completions; resolves to the final event (citations, sources).
  async function streamAnswer(body, box) {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      throw new Error(errorMessage(await response.text(), `${response.status} ${response.statusText}`));
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let text = "";
    let final = null;
    let deltas = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          const choice = chunk.choices && chunk.choices[0];
          if (choice && choice.delta && choice.delta.content) {
            text += choice.delta.content;
            deltas += 1;
            box.text.textContent = text;
            box.article.dataset.deltas = String(deltas);
          }
          if (chunk.citations !== undefined) final = chunk;
        }
      }
    }
    return { text, final };
  }

  const form = document.getElementById("ask");
  if (form) {
    const labels = {
      rag: form.dataset.labelRag, alone: form.dataset.labelAlone, sources: form.dataset.labelSources,
      nosources: form.dataset.labelNosources, thinking: form.dataset.labelThinking, error: form.dataset.labelError,
      page: form.dataset.labelPage, empty: form.dataset.labelEmpty,
    };
    const question = document.getElementById("question");
    const send = document.getElementById("send");
    const turns = document.getElementById("turns");

    function pastMessages() {
      const messages = [];
      for (const turn of Array.from(turns.querySelectorAll(".turn")).slice(-3)) {
        const asked = turn.querySelector(".question");
        const answered = turn.querySelector(".answer.rag .text");
        if (asked && answered) {
          messages.push({ role: "user", content: asked.textContent });
          messages.push({ role: "assistant", content: answered.textContent });
        }
      }
      return messages;
    }

    question.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const asked = question.value.trim();
      if (!asked) return;
      const compare = document.getElementById("compare").checked;
      const previous = pastMessages();
      document.getElementById("chat-empty")?.remove();
      const turn = document.createElement("div");
      turn.className = "turn";
      const shown = document.createElement("p");
      shown.className = "question";
      shown.textContent = asked;
      const answers = document.createElement("div");
      answers.className = "answers" + (compare ? " two" : "");
      turn.append(shown, answers);
      turns.append(turn);
      question.value = "";
      send.disabled = true;
      const conversation = form.dataset.conversation;
      const jobs = [[form.dataset.ragModel, "rag", labels.rag]];
      if (compare) jobs.push([form.dataset.model, "alone", labels.alone]);
      const boxes = jobs.map(([, kind, label]) => answerBox(answers, kind, label, labels.thinking));
      try {
        for (let i = 0; i < jobs.length; i++) {
          const [model, kind] = jobs[i];
          const box = boxes[i];
          try {
            const messages = [...(kind === "rag" ? previous : []), { role: "user", content: asked }];
            const { text, final } = await streamAnswer({ model, stream: true, conversation, messages }, box);
            const sources = (final && final.sources) || [];
            if (text.trim()) {
              renderText(box.text, text, sources);
            } else {
              box.text.textContent = labels.empty;
              box.text.classList.add("muted");
            }
            if (kind === "rag") renderSources(box.article, sources, labels);
          } catch (error) {
            box.text.textContent = `${labels.error}: ${error.message}`;
            box.article.classList.add("failed");
          } finally {
            box.article.classList.remove("streaming");
            box.article.setAttribute("aria-busy", "false");
          }
        }
        const url = new URL(window.location.href);
        if (url.searchParams.get("c") !== conversation) {
          url.searchParams.set("c", conversation);
          window.history.replaceState(null, "", url);
        }
        if (window.htmx) {
          window.htmx.ajax("GET", `/ui/chat/list?c=${encodeURIComponent(conversation)}`, {
            target: "#conversation-list", swap: "outerHTML",
          });
        }
      } finally {
        send.disabled = false;
        question.focus();
      }
    });
  }

  // --- background jobs ---------------------------------------------------------------------------

  function describe(item, job) {
    const state = item.querySelector(".state");
    if (state) state.textContent = item.dataset["state" + job.state[0].toUpperCase() + job.state.slice(1)] || job.state;
    const bar = item.querySelector("progress");
    if (bar) {
      bar.max = job.total || 1;
      bar.value = job.total ? job.done : (job.state === "running" ? 0 : 1);
    }
    const stage = item.querySelector(".stage");
    if (stage) {
      const where = job.stage ? `${job.stage} ${job.done}${job.total ? "/" + job.total : ""}` : item.dataset.labelStarting;
      stage.textContent = where + (job.note && job.note !== "starting" ? ` · ${job.note}` : "");
    }
    item.dataset.state = job.state;
    item.className = `job ${job.state}`;
  }

  function refreshAfterJob() {
    if (!window.htmx) return;
    if (document.getElementById("jobs")) {
      window.htmx.ajax("GET", "/ui/jobs", { target: "#jobs", swap: "outerHTML" });
    }
    if (document.getElementById("library-results")) {
      window.htmx.ajax("GET", window.location.pathname + window.location.search, {
        target: "#library-results", swap: "outerHTML",
      });
    }
  }

  function followJobs(root) {
    for (const item of root.querySelectorAll("li.job[data-state='running']")) {
      if (item.dataset.following) continue;
      item.dataset.following = "1";
      const source = new EventSource(`/ui/jobs/${encodeURIComponent(item.dataset.job)}/events`);
      source.onmessage = (event) => describe(item, JSON.parse(event.data));
      source.addEventListener("end", () => {
        source.close();
        refreshAfterJob();
      });
      source.onerror = () => source.close();
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    followJobs(document);
    const cited = document.getElementById("cited");
    if (cited) {
      cited.scrollIntoView({ block: "center" });
      cited.focus({ preventScroll: true });
    }
  });
  document.addEventListener("htmx:afterSettle", () => followJobs(document));
})();
