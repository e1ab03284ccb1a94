"""The web UI: chat with citations, the document library, evaluation and admin, in a browser.

Why server-rendered pages (Jinja2) with htmx and not a single-page app: infuse runs offline on a
user's machine, so there is no Node build step and no CDN; every page is HTML the server writes
with the same library calls as the CLI and the JSON API, and htmx (one vendored file, 0BSD) swaps
fragments for forms and lists. The two things plain HTML cannot do are a small script
(``static/app.js``): the chat streams its answer from ``/v1/chat/completions`` (the OpenAI route,
so the queue, per-caller retrieval, audit and cancellation are the API's own) and job progress
follows server-sent events from ``/ui/jobs/ID/events``.

Invariants:

- **Every page takes the caller from the auth dependency** (:class:`~infuse.server.auth.Gate`):
  a browser without a session is sent to ``/ui/login``; every list, search and document view is
  narrowed by :meth:`ServerContext.visible <infuse.server.context.ServerContext.visible>`, so a
  user never sees a passage they may not read, here as in the API. Admin pages are 403 to members.
- **Every state-changing request is a POST from this UI's own script**: it must carry the
  ``HX-Request`` header (a cross-site form cannot set it), and a signed-in session's CSRF token
  (the gate checks it). The token reaches the page in the non-HttpOnly ``infuse_csrf`` cookie set
  at sign-in (double submit; the session cookie itself stays HttpOnly and SameSite=Strict).
- **Long work is a background job** (:mod:`infuse.server.background`): an ``infuse`` command in
  its own process whose record lives in ``WS/jobs``, so a reload or a second browser sees the same
  progress and a closed browser does not stop it.
- Model text is never inserted as HTML: templates escape it and the script sets ``textContent``.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

import anyio
from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from infuse.access import EVERYONE, AccessList, Caller
from infuse.identity import IdentityStore
from infuse.jobs import JobState
from infuse.server.audit import read_records
from infuse.server.auth import SAFE_METHODS, SESSION_COOKIE, note, set_session_cookie
from infuse.server.background import BackgroundJob, JobLauncher
from infuse.server.common import RAG_MODEL_ID, APIError
from infuse.server.context import ServerContext
from infuse.server.conversations import check_id
from infuse.server.documents import _visible_document
from infuse.server.web.i18n import LANG_COOKIE, Translator, UILanguage, pick_language
from infuse.store.filters import Eq, combine
from infuse.workspace import DocumentView

HERE = Path(__file__).parent
UPLOAD_ROUTE = "/ui/library/upload"
CSRF_COOKIE = "infuse_csrf"
DOCUMENTS_SHOWN = 500  # rows in the library table (the count says how many there are)
JOB_POLL_SECONDS = 0.5
CITATION_MARK = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
SAFE_NAME = re.compile(r"[^\w.\- ]+", re.UNICODE)
T = TypeVar("T")


class SignInRequired(Exception):
    """A page was asked for without a valid session: the app answers with a redirect to sign in."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def sign_in_redirect(exc: SignInRequired) -> RedirectResponse:
    return RedirectResponse("/ui/login?" + urlencode({"next": exc.next_url}), status_code=303)


def wants_page(request: Request) -> bool:
    """A browser navigating to a page (not the UI's own script): its errors are pages, not JSON."""
    return (
        request.url.path.startswith("/ui") and request.method == "GET" and request.headers.get("hx-request") != "true"
    )


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """An error as a page in the browser's language (the same words the JSON error carries)."""
    t = Translator(pick_language(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")))
    context: dict[str, Any] = {
        "t": t,
        "lang": t.language.value,
        "other_lang": "en" if t.language is UILanguage.JA else "ja",
    }
    context |= {"caller": None, "csrf": "", "multi_user": False, "path": request.url.path, "query": ""}
    return TEMPLATES.TemplateResponse(request, "error.html", {**context, "message": message}, status_code=status)


def mount_static(app: FastAPI) -> None:
    """``/ui/static``: the stylesheet, the script and htmx (no data: served without auth)."""
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")


def _safe_next(url: str | None) -> str:
    """Only a path on this server (never ``//host`` or a scheme): no open redirect after sign-in."""
    if not url or not url.startswith("/ui") or url.startswith("//") or "\\" in url:
        return "/ui/chat"
    return url


def linkify(text: str, sources: list[dict[str, Any]] | None) -> Markup:
    """Escaped ``text`` with each ``[n]`` marker a link to source ``n``'s passage (unknown numbers stay text)."""
    by_number = {s["number"]: s for s in sources or []}
    out: list[str] = []
    position = 0
    for match in CITATION_MARK.finditer(text):
        out.append(str(escape(text[position : match.start()])))
        links = []
        for raw in match.group(1).split(","):
            number = int(raw.strip())
            source = by_number.get(number)
            if source is None:
                links.append(str(escape(raw.strip())))
            else:
                links.append(
                    f'<a class="cite" href="{escape(source_url(source))}" title="{escape(source["source_path"])}">'
                    f"{number}</a>"
                )
        out.append("[" + ", ".join(links) + "]")
        position = match.end()
    out.append(str(escape(text[position:])))
    return Markup("".join(out))


def source_url(source: dict[str, Any]) -> str:
    """The document view of a cited passage, highlighted."""
    return f"/ui/documents/{quote(source['doc_id'], safe='')}?chunk={quote(source['chunk_id'], safe='')}#cited"


TEMPLATES = Jinja2Templates(directory=HERE / "templates")
TEMPLATES.env.filters["linkify"] = linkify
TEMPLATES.env.globals["source_url"] = source_url


def web_router(
    ctx: ServerContext,
    *,
    identity: IdentityStore | None,
    audit_file: Path | None,
    launcher: JobLauncher | None,
) -> APIRouter:
    """The pages under ``/ui`` (see the module docstring)."""
    templates = TEMPLATES
    gate = ctx.gate
    workspace = ctx.workspace
    router = APIRouter(prefix="/ui", include_in_schema=False)

    async def run(work: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(work)

    async def caller_of(request: Request) -> Caller:
        try:
            return await gate(request)
        except APIError as exc:
            if exc.status == 401 and request.method in SAFE_METHODS:
                raise SignInRequired(
                    str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
                ) from None
            raise

    async def from_this_ui(request: Request) -> None:
        """State changes only from this UI's own script (see the module docstring)."""
        if request.headers.get("hx-request") != "true" or request.headers.get("sec-fetch-site") == "cross-site":
            raise APIError(
                403,
                "this form is sent by the infuse web page's own script (HX-Request header); reload the page",
                "not_from_the_ui",
                kind="permission_error",
            )

    async def admin_of(caller: Caller = Depends(caller_of)) -> Caller:
        if not caller.admin:
            raise APIError(403, "this page is for admins", "admin_only", kind="permission_error")
        return caller

    def translator(request: Request) -> Translator:
        return Translator(pick_language(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")))

    def render(request: Request, caller: Caller | None, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        t = translator(request)
        return templates.TemplateResponse(
            request,
            name,
            {
                "t": t,
                "lang": t.language.value,
                "other_lang": "en" if t.language is UILanguage.JA else "ja",
                "caller": caller,
                "csrf": request.cookies.get(CSRF_COOKIE, ""),
                "multi_user": gate.multi_user,
                "path": request.url.path,
                "query": request.url.query,
                **context,
            },
            status_code=status,
        )

    def no_workspace() -> APIError:
        return APIError(404, "this server has no workspace (start it with infuse serve)", "no_workspace")

    # --- sign-in and language ---------------------------------------------------------------------

    @router.get("", response_model=None)
    @router.get("/", response_model=None)
    async def home() -> RedirectResponse:
        return RedirectResponse("/ui/chat", status_code=303)

    @router.get("/login", response_model=None)
    async def login_page(request: Request, next: str | None = None) -> HTMLResponse:
        return render(request, None, "login.html", next=_safe_next(next), error=None)

    @router.post("/login", response_model=None)
    async def login(
        request: Request, key: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/ui/chat"
    ) -> Response:
        target = _safe_next(next)
        t = translator(request)
        if gate.authenticator is None:
            return RedirectResponse(target, status_code=303)
        try:
            caller, grant = await gate.sign_in(request, key)
        except APIError as exc:
            if exc.status == 429:
                seconds = (exc.headers or {}).get("Retry-After", "60")
                return render(request, None, "login.html", 429, next=target, error=t("login.limited", seconds=seconds))
            return render(request, None, "login.html", 401, next=target, error=t("login.bad"))
        response = RedirectResponse(target, status_code=303)
        set_session_cookie(response, request, grant)
        # The CSRF token for the page's script (double submit: the server checks it against the session).
        csrf_cookie = {"max_age": grant.max_age, "samesite": "strict", "secure": request.url.scheme == "https"}
        response.set_cookie(CSRF_COOKIE, grant.csrf, httponly=False, path="/", **csrf_cookie)  # type: ignore[arg-type]
        return response

    @router.post("/logout", response_model=None, dependencies=[Depends(from_this_ui)])
    async def logout(request: Request, caller: Caller = Depends(caller_of)) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        if token and gate.authenticator is not None:
            authenticator = gate.authenticator
            await run(lambda: authenticator.end_session(token))
        response = Response(status_code=204, headers={"HX-Redirect": "/ui/login"})
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    @router.get("/lang/{code}", response_model=None)
    async def switch_language(code: UILanguage, next: str | None = None) -> RedirectResponse:
        """The header's language switch: remembered in a cookie for a year."""
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(LANG_COOKIE, code.value, max_age=365 * 86400, samesite="lax", path="/")
        return response

    # --- chat -------------------------------------------------------------------------------------

    def alone_label(t: Translator) -> str:
        tuned = ctx.tuned
        return t("chat.tuned_alone", runs=", ".join(tuned.runs)) if tuned is not None else t("chat.without_rag")

    def turns_of(conversation: dict[str, Any] | None) -> list[dict[str, Any]]:
        """A conversation as turns: a question and the answers that followed it (RAG, model alone).
        The comparison toggle asks the same question twice in a row: one turn with both answers."""
        turns: list[dict[str, Any]] = []
        for message in (conversation or {}).get("messages", []):
            if message.get("role") == "user":
                question = message.get("content", "")
                if not (turns and turns[-1]["question"] == question and turns[-1]["alone"] is None):
                    turns.append({"question": question, "rag": None, "alone": None})
            elif turns:
                slot = "rag" if message.get("model") == RAG_MODEL_ID else "alone"
                turns[-1][slot] = message
        return turns

    @router.get("/chat", response_model=None)
    async def chat(request: Request, c: str | None = None, caller: Caller = Depends(caller_of)) -> HTMLResponse:
        store = ctx.conversations
        conversations = await run(lambda: store.list(caller.name)) if store is not None else []
        conversation = None
        if c is not None and store is not None:
            conversation = await run(lambda: store.get(caller.name, check_id(c)))
        refused = None
        try:
            ctx.check_weights(caller)
        except APIError as exc:
            refused = exc.message
        t = translator(request)
        return render(
            request,
            caller,
            "chat.html",
            conversations=conversations,
            conversation=conversation,
            conversation_id=c if conversation is not None else secrets.token_hex(8),
            turns=turns_of(conversation),
            model_name=ctx.model.name,
            rag_model=RAG_MODEL_ID,
            alone_label=alone_label(t),
            refused=refused,
        )

    @router.get("/chat/list", response_model=None)
    async def chat_list(request: Request, c: str | None = None, caller: Caller = Depends(caller_of)) -> HTMLResponse:
        store = ctx.conversations
        conversations = await run(lambda: store.list(caller.name)) if store is not None else []
        return render(request, caller, "_conversations.html", conversations=conversations, conversation_id=c)

    @router.post("/conversations/{conversation_id}/delete", response_model=None, dependencies=[Depends(from_this_ui)])
    async def delete_conversation(conversation_id: str, caller: Caller = Depends(caller_of)) -> Response:
        store = ctx.conversations
        if store is not None:
            await run(lambda: store.delete(caller.name, check_id(conversation_id)))
        return Response(status_code=204, headers={"HX-Redirect": "/ui/chat"})

    # --- documents --------------------------------------------------------------------------------

    @router.get("/documents/{doc_id:path}", response_model=None)
    async def document(
        request: Request, doc_id: str, chunk: str | None = None, caller: Caller = Depends(caller_of)
    ) -> HTMLResponse:
        if workspace is None:
            raise no_workspace()
        view = await visible_view(doc_id, caller)
        note(request, chunks=[chunk] if chunk else [])
        text = view.text
        cited = next((c for c in view.chunks if c.chunk_id == chunk), None)
        # The text in three parts around the cited span (the page highlights the middle one).
        parts = (text[: cited.start], text[cited.start : cited.end], text[cited.end :]) if cited else (text, "", "")
        flagged = [c for c in view.chunks if c.flags]
        return render(
            request,
            caller,
            "document.html",
            view=view,
            document=view.record.document,
            cited=cited,
            parts=parts,
            flagged=flagged,
            original=await run(lambda: original_of(view, caller)) is not None,
        )

    def original_of(view: DocumentView, caller: Caller) -> Path | None:
        """The document's original file, when the caller may have it: it still exists, and it holds
        this document alone (a JSONL file holds records other people may not read: admins only)."""
        assert workspace is not None
        path = Path(view.record.document.source_path)
        if not path.is_file():
            return None
        if caller.admin:
            return path
        sharing = workspace.documents(Eq("source_path", view.record.document.source_path))
        return path if len(sharing) == 1 else None

    async def visible_view(doc_id: str, caller: Caller) -> DocumentView:
        assert workspace is not None
        visible = ctx.visible(caller)
        if visible is None:
            return await run(lambda: workspace.document(doc_id))
        return await run(lambda: _visible_document(workspace, doc_id, visible))

    @router.get("/documents-file/{doc_id:path}", response_model=None)
    async def original_file(doc_id: str, caller: Caller = Depends(caller_of)) -> FileResponse:
        """A document's original file (e.g. a PDF, opened at the cited page), for those who may read it."""
        if workspace is None:
            raise no_workspace()
        view = await visible_view(doc_id, caller)
        path = await run(lambda: original_of(view, caller))
        if path is None:
            raise APIError(
                404, "the original file is not available: it moved, or it holds other documents too", "not_found"
            )
        return FileResponse(path)

    # --- library ----------------------------------------------------------------------------------

    def upload_choices(caller: Caller, t: Translator) -> list[tuple[str, str]]:
        choices = [("me", t("library.upload.only_me"))]
        choices += [(f"group:{g}", t("library.upload.group", group=g)) for g in caller.groups]
        choices.append(("everyone", t("library.upload.everyone")))
        if caller.admin:
            choices.insert(0, ("default", t("library.upload.default")))
        return choices

    def jobs_for(caller: Caller) -> list[BackgroundJob]:
        return launcher.list(None if caller.admin else caller.name) if launcher is not None else []

    @router.get("/library", response_model=None)
    async def library(
        request: Request,
        q: str | None = Query(None, max_length=2000),
        lang: str | None = None,
        file_type: str | None = None,
        caller: Caller = Depends(caller_of),
    ) -> HTMLResponse:
        if workspace is None:
            raise no_workspace()
        visible = ctx.visible(caller)
        narrowed = combine(
            visible, Eq("lang", lang) if lang else None, Eq("file_type", file_type) if file_type else None
        )
        documents = await run(lambda: workspace.documents(narrowed))
        hits = None
        if q:
            note(request, question=q)
            hits = await run(lambda: workspace.search(q, 10, None, narrowed))
            note(request, chunks=[h.chunk.chunk_id for h in hits])
        t = translator(request)
        context: dict[str, Any] = {
            "documents": documents[:DOCUMENTS_SHOWN],
            "total": len(documents),
            "hits": hits,
            "q": q or "",
            "lang_filter": lang or "",
            "type_filter": file_type or "",
            "jobs": await run(lambda: jobs_for(caller)),
            "choices": upload_choices(caller, t),
            "can_upload": launcher is not None,
        }
        if request.headers.get("hx-request") == "true" and request.headers.get("hx-target") == "library-results":
            return render(request, caller, "_library_results.html", **context)
        return render(request, caller, "library.html", **context)

    def upload_access(share: str, caller: Caller) -> list[str]:
        """The access list of a member's upload: themselves, a group they are in, or everyone."""
        if share == "default" and caller.admin:
            return []
        if share == "me":
            return [f"user:{caller.name}"]
        if share == EVERYONE:
            return [EVERYONE]
        if share.startswith("group:") and (caller.admin or share.removeprefix("group:") in caller.groups):
            return [share]
        raise APIError(400, f"share {share!r}: choose me, everyone or a group you are in", "bad_share", "share")

    @router.post(UPLOAD_ROUTE.removeprefix("/ui"), response_model=None, dependencies=[Depends(from_this_ui)])
    async def upload(
        request: Request,
        files: Annotated[list[UploadFile], File()],
        share: Annotated[str, Form()] = "me",
        caller: Caller = Depends(caller_of),
    ) -> HTMLResponse:
        if workspace is None or launcher is None:
            raise no_workspace()
        access = upload_access(share, caller)
        folder = workspace.uploads_dir / _safe_part(caller.name) / secrets.token_hex(6)
        saved: list[Path] = []
        folder.mkdir(parents=True, exist_ok=True)
        for upload_file in files:
            name = _safe_part(Path(upload_file.filename or "upload").name)
            target = folder / name
            data = await upload_file.read()
            await run(lambda target=target, data=data: target.write_bytes(data))  # type: ignore[misc]
            saved.append(target)
        if not saved:
            raise APIError(400, "choose at least one file to upload", "no_files", "files")
        args = ["ingest", str(folder), "--wait", "600"] + [f"--access={entry}" for entry in access]
        job_id = launcher.start("ingest", args, caller.name)
        note(request, uploaded=[p.name for p in saved], job=job_id)
        return render(request, caller, "_jobs.html", jobs=jobs_for(caller), follow=job_id)

    @router.post("/library/ingest-folder", response_model=None, dependencies=[Depends(from_this_ui)])
    async def ingest_folder(
        request: Request,
        path: Annotated[str, Form()],
        access: Annotated[str, Form()] = "",
        caller: Caller = Depends(admin_of),
    ) -> HTMLResponse:
        if launcher is None:
            raise no_workspace()
        folder = Path(path).expanduser()
        if not folder.exists():
            raise APIError(400, f"{folder} does not exist on the server", "not_found", "path")
        entries = [e.strip() for e in access.split(",") if e.strip()]
        AccessList.parse(entries)  # a bad entry is a 400 now, not a failed job later
        args = ["ingest", str(folder), "--wait", "600"] + [f"--access={entry}" for entry in entries]
        job_id = launcher.start("ingest", args, caller.name)
        return render(request, caller, "_jobs.html", jobs=jobs_for(caller), follow=job_id)

    @router.post("/library/access", response_model=None, dependencies=[Depends(from_this_ui)])
    async def set_access(
        request: Request,
        doc_id: Annotated[str, Form()],
        access: Annotated[str, Form()] = "",
        caller: Caller = Depends(admin_of),
    ) -> HTMLResponse:
        if workspace is None:
            raise no_workspace()
        entries = [e.strip() for e in access.split(",") if e.strip()]
        known = await run(identity.known_principals) if identity is not None else None  # typos are errors
        await run(lambda: workspace.set_access_at(doc_id, entries, known))
        t = translator(request)
        shown = ", ".join(entries) or t("library.access.default")
        return HTMLResponse(f'<span class="saved" role="status">{escape(shown)} ✓</span>')

    @router.post("/library/delete", response_model=None, dependencies=[Depends(from_this_ui)])
    async def delete_document(doc_id: Annotated[str, Form()], caller: Caller = Depends(admin_of)) -> Response:
        if workspace is None:
            raise no_workspace()
        await run(lambda: workspace.remove([doc_id]))
        return HTMLResponse("")  # htmx swaps the row out

    # --- jobs -------------------------------------------------------------------------------------

    def visible_job(job_id: str, caller: Caller) -> BackgroundJob:
        found = launcher.get(job_id) if launcher is not None else None
        if found is None or not (caller.admin or found.user == caller.name):
            raise APIError(404, f"no job {job_id!r}", "not_found")
        return found

    @router.get("/jobs", response_model=None)
    async def jobs(request: Request, caller: Caller = Depends(caller_of)) -> HTMLResponse:
        return render(request, caller, "_jobs.html", jobs=await run(lambda: jobs_for(caller)), follow=None)

    @router.get("/jobs/{job_id}/events", response_model=None)
    async def job_events(request: Request, job_id: str, caller: Caller = Depends(caller_of)) -> StreamingResponse:
        """Server-sent events: the job's record whenever it changes, until it ends."""
        await run(lambda: visible_job(job_id, caller))

        async def events() -> AsyncIterator[str]:
            last = None
            while True:
                found = await run(lambda: visible_job(job_id, caller))
                record = found.to_dict()
                payload = json.dumps(record, ensure_ascii=False)
                if payload != last:
                    last = payload
                    yield f"data: {payload}\n\n"
                if found.job.state != JobState.RUNNING or await request.is_disconnected():
                    yield "event: end\ndata: {}\n\n"
                    return
                await asyncio.sleep(JOB_POLL_SECONDS)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    # --- evaluate (admins: reports hold passages from every document) ------------------------------

    @router.get("/evaluate", response_model=None)
    async def evaluate(
        request: Request, run_name: str | None = Query(None, alias="run"), caller: Caller = Depends(admin_of)
    ) -> HTMLResponse:
        if workspace is None:
            raise no_workspace()
        from infuse.advice import Criteria, advise
        from infuse.evaluation.compare import latest_run, list_compare_runs, load_run
        from infuse.evaluation.questions import list_question_sets
        from infuse.tuning.datasets import list_datasets
        from infuse.tuning.registry import list_runs
        from infuse.tuning.trainer import RunStatus, TuneMethod

        def gather() -> dict[str, Any]:
            runs = list_compare_runs(workspace)
            chosen = load_run(workspace, run_name) if run_name else latest_run(workspace)
            recommendation = advise(Criteria(), chosen.summary if chosen else None, workspace=workspace.path)
            return {
                "runs": list(reversed(runs)),
                "chosen": chosen.summary.run if chosen else None,
                "advice": recommendation,
                "question_sets": list_question_sets(workspace.questions_dir),
                "adapters": [r.name for r in list_runs(workspace) if r.status is RunStatus.COMPLETE],
                "datasets": list_datasets(workspace.datasets_dir),
                "methods": [m.value for m in TuneMethod],
            }

        return render(request, caller, "evaluate.html", jobs=await run(lambda: jobs_for(caller)), **await run(gather))

    @router.post("/evaluate/compare", response_model=None, dependencies=[Depends(from_this_ui)])
    async def start_compare(
        request: Request,
        questions: Annotated[str, Form()],
        variants: Annotated[list[str], Form()],
        limit: Annotated[str, Form()] = "",
        adapter: Annotated[str, Form()] = "",
        caller: Caller = Depends(admin_of),
    ) -> HTMLResponse:
        if launcher is None:
            raise no_workspace()
        args = ["compare", "--questions", questions, "--variants", ",".join(variants)]
        if limit.strip():
            if not limit.strip().isdigit() or int(limit) < 1:
                raise APIError(
                    400,
                    f"limit {limit!r}: give a positive number of questions, or leave it empty",
                    "bad_limit",
                    "limit",
                )
            args += ["--limit", limit.strip()]
        if adapter:
            args += ["--adapter", adapter]
        job_id = launcher.start("compare", args, caller.name)
        return render(request, caller, "_jobs.html", jobs=jobs_for(caller), follow=job_id)

    @router.post("/evaluate/tune", response_model=None, dependencies=[Depends(from_this_ui)])
    async def start_tune(
        request: Request,
        dataset: Annotated[str, Form()],
        method: Annotated[str, Form()] = "lora",
        name: Annotated[str, Form()] = "",
        caller: Caller = Depends(admin_of),
    ) -> HTMLResponse:
        """Fine-tune the served workspace's model ([model] name) on a dataset, as `infuse tune`."""
        if launcher is None:
            raise no_workspace()
        args = ["tune", "--dataset", dataset, "--method", method] + (["--name", name.strip()] if name.strip() else [])
        job_id = launcher.start("tune", args, caller.name)
        return render(request, caller, "_jobs.html", jobs=jobs_for(caller), follow=job_id)

    @router.get("/evaluate/runs/{name}/report", response_model=None)
    async def report(name: str, caller: Caller = Depends(admin_of)) -> FileResponse:
        """The run's HTML report (written on first view), shown in the evaluate page's frame."""
        if workspace is None:
            raise no_workspace()
        from infuse.evaluation.compare import load_run
        from infuse.evaluation.report import write_report

        found = await run(lambda: load_run(workspace, name))
        if found is None:
            raise APIError(404, f"no compare run {name!r}", "not_found")
        html = found.path / "report.html"
        if not html.is_file():
            _, html = await run(lambda: write_report(found.path))
        return FileResponse(html, media_type="text/html")

    # --- admin ------------------------------------------------------------------------------------

    @router.get("/admin", response_model=None)
    async def admin(request: Request, caller: Caller = Depends(admin_of), new_key: str | None = None) -> HTMLResponse:
        users = await run(identity.list_users) if identity is not None else []
        groups = await run(identity.list_groups) if identity is not None else []
        failures = await run(lambda: identity.failures(20)) if identity is not None else []
        audit = await run(lambda: read_records(audit_file, last=50)) if audit_file is not None else None
        return render(
            request,
            caller,
            "admin.html",
            users=users,
            groups=groups,
            failures=failures,
            audit=list(reversed(audit)) if audit is not None else None,
            identity=identity is not None,
        )

    def admin_panel(request: Request, caller: Caller, **extra: Any) -> HTMLResponse:
        assert identity is not None
        return render(
            request, caller, "_admin_people.html", users=identity.list_users(), groups=identity.list_groups(), **extra
        )

    def need_identity() -> IdentityStore:
        if identity is None:
            raise APIError(400, "users and groups need a server started with --auth", "no_identity")
        return identity

    @router.post("/admin/users", response_model=None, dependencies=[Depends(from_this_ui)])
    async def add_user(
        request: Request,
        name: Annotated[str, Form()],
        groups: Annotated[str, Form()] = "",
        admin: Annotated[bool, Form()] = False,
        caller: Caller = Depends(admin_of),
    ) -> HTMLResponse:
        store = need_identity()
        wanted = [g.strip() for g in groups.split(",") if g.strip()]
        key = await run(lambda: store.add_user(name.strip(), admin=admin, groups=wanted))
        return await run(lambda: admin_panel(request, caller, new_key=(name.strip(), key)))

    @router.post("/admin/users/{name}/{action}", response_model=None, dependencies=[Depends(from_this_ui)])
    async def user_action(request: Request, name: str, action: str, caller: Caller = Depends(admin_of)) -> HTMLResponse:
        store = need_identity()
        new_key = None
        if action == "rotate":
            new_key = (name, await run(lambda: store.rotate_key(name)))
        elif action == "revoke":
            await run(lambda: store.revoke_keys(name))
        elif action == "remove":
            await run(lambda: store.remove_user(name))
        else:
            raise APIError(404, f"no user action {action!r} (rotate, revoke, remove)", "not_found")
        return await run(lambda: admin_panel(request, caller, new_key=new_key))

    @router.post("/admin/groups", response_model=None, dependencies=[Depends(from_this_ui)])
    async def add_group(
        request: Request, name: Annotated[str, Form()], caller: Caller = Depends(admin_of)
    ) -> HTMLResponse:
        store = need_identity()
        await run(lambda: store.add_group(name.strip()))
        return await run(lambda: admin_panel(request, caller))

    @router.post("/admin/groups/{group}/members", response_model=None, dependencies=[Depends(from_this_ui)])
    async def add_member(
        request: Request, group: str, user: Annotated[str, Form()], caller: Caller = Depends(admin_of)
    ) -> HTMLResponse:
        store = need_identity()
        await run(lambda: store.add_member(group, user.strip()))
        return await run(lambda: admin_panel(request, caller))

    @router.post("/admin/groups/{group}/remove", response_model=None, dependencies=[Depends(from_this_ui)])
    async def remove_group(request: Request, group: str, caller: Caller = Depends(admin_of)) -> HTMLResponse:
        store = need_identity()
        await run(lambda: store.remove_group(group))
        return await run(lambda: admin_panel(request, caller))

    return router


def _safe_part(name: str) -> str:
    """A file or folder name from user input: no separators, no leading dot, not empty."""
    cleaned = SAFE_NAME.sub("_", name).strip().lstrip(".") or "upload"
    return cleaned[:120]


__all__ = [
    "CSRF_COOKIE",
    "UPLOAD_ROUTE",
    "SignInRequired",
    "error_page",
    "mount_static",
    "sign_in_redirect",
    "wants_page",
    "web_router",
]
