"""The web UI's words in English and Japanese, and how a page picks its language.

Why a table in code and not gettext catalogs: two languages, a few hundred words, and a test that
every key has both (``tests/test_web_ui.py``) keeps them from drifting; a missing key fails loudly
in tests and shows the key itself (never a blank) in production.

The language is, in order: the ``infuse_lang`` cookie (the switch in the header sets it), else the
browser's ``Accept-Language`` (its first of ``ja``/``en`` by quality), else English.
"""

from __future__ import annotations

from enum import StrEnum

LANG_COOKIE = "infuse_lang"


class UILanguage(StrEnum):
    EN = "en"
    JA = "ja"


# key -> (English, Japanese)
MESSAGES: dict[str, tuple[str, str]] = {
    "app.tagline": ("Answers from your documents", "社内文書から答える"),
    "nav.chat": ("Chat", "チャット"),
    "nav.library": ("Documents", "文書"),
    "nav.evaluate": ("Evaluate", "評価"),
    "nav.admin": ("Admin", "管理"),
    "nav.signout": ("Sign out", "サインアウト"),
    "nav.language": ("Language", "言語"),
    "nav.skip": ("Skip to content", "本文へ移動"),
    "login.title": ("Sign in", "サインイン"),
    "login.key": ("API key", "APIキー"),
    "login.help": (
        "Use the key your administrator gave you (infuse users add printed it).",
        "管理者から受け取ったキーを入力してください（infuse users add で発行されます）。",
    ),
    "login.submit": ("Sign in", "サインイン"),
    "login.bad": ("That key is not valid.", "キーが正しくありません。"),
    "login.limited": (
        "Too many failed attempts; try again in {seconds} s.",
        "失敗が多すぎます。{seconds}秒後に再試行してください。",
    ),
    "login.single": (
        "This server runs without --auth and a key: you are the local admin.",
        "このサーバーは --auth なしで動いています。ローカル管理者として使えます。",
    ),
    "chat.title": ("Chat", "チャット"),
    "chat.new": ("New conversation", "新しい会話"),
    "chat.history": ("Conversations", "会話の履歴"),
    "chat.none": ("No conversations yet.", "まだ会話はありません。"),
    "chat.ask": ("Ask a question about your documents", "文書について質問してください"),
    "chat.send": ("Ask", "送信"),
    "chat.compare": ("Also answer without retrieval", "検索なしの回答も並べて表示"),
    "chat.compare.help": (
        "The same question to the model alone, beside the answer from your documents.",
        "同じ質問をモデル単体にも送り、文書に基づく回答と並べます。",
    ),
    "chat.with_rag": ("From your documents", "文書に基づく回答"),
    "chat.without_rag": ("Model alone (no retrieval)", "モデル単体（検索なし）"),
    "chat.tuned_alone": ("Fine-tuned model alone ({runs})", "ファインチューニング済みモデル単体（{runs}）"),
    "chat.sources": ("Sources", "出典"),
    "chat.no_sources": ("No passage was found for this question.", "この質問に合う文書は見つかりませんでした。"),
    "chat.thinking": ("Answering…", "回答中…"),
    "chat.error": ("The answer failed", "回答に失敗しました"),
    "chat.no_answer": ("(no answer: the model stopped at once)", "（回答なし：モデルがすぐに生成を終えました）"),
    "chat.delete": ("Delete conversation", "会話を削除"),
    "chat.empty": (
        "Ask anything your documents answer. Numbers like [1] link to the passage.",
        "文書に書かれていることを質問できます。[1] のような番号から該当箇所を開けます。",
    ),
    "doc.title": ("Document", "文書"),
    "doc.cited": ("Cited passage", "引用箇所"),
    "doc.page": ("page {page}", "{page}ページ"),
    "doc.flagged": ("possible prompt injection", "プロンプトインジェクションの疑い"),
    "doc.back": ("Back", "戻る"),
    "doc.chunks": ("{n} passages", "{n}件のパッセージ"),
    "doc.original": ("Open the original file", "元のファイルを開く"),
    "library.title": ("Documents", "文書"),
    "library.search": ("Search the documents you may read", "閲覧できる文書を検索"),
    "library.search.button": ("Search", "検索"),
    "library.filter.lang": ("Language", "言語"),
    "library.filter.type": ("File type", "ファイル形式"),
    "library.filter.any": ("any", "すべて"),
    "library.results": ("Search results", "検索結果"),
    "library.no_results": ("Nothing found.", "見つかりませんでした。"),
    "library.upload": ("Upload files", "ファイルをアップロード"),
    "library.upload.files": ("Files", "ファイル"),
    "library.upload.share": ("Who may read them", "閲覧できる人"),
    "library.upload.only_me": ("Only me", "自分のみ"),
    "library.upload.everyone": ("Everyone", "全員"),
    "library.upload.group": ("Group {group}", "グループ {group}"),
    "library.upload.default": ("Workspace default", "ワークスペースの既定"),
    "library.upload.button": ("Upload and ingest", "アップロードして取り込む"),
    "library.folder": ("Ingest a folder on the server", "サーバー上のフォルダを取り込む"),
    "library.folder.path": ("Folder path on the server", "サーバー上のパス"),
    "library.folder.access": (
        "Access list (e.g. group:legal, deny:user:eve)",
        "アクセスリスト（例: group:legal, deny:user:eve）",
    ),
    "library.folder.button": ("Ingest", "取り込む"),
    "library.documents": ("Documents you may read ({n})", "閲覧できる文書（{n}件）"),
    "library.col.document": ("Document", "文書"),
    "library.col.lang": ("Lang", "言語"),
    "library.col.chunks": ("Passages", "パッセージ"),
    "library.col.flagged": ("Flagged", "要注意"),
    "library.col.access": ("Who may read", "閲覧権限"),
    "library.col.ingested": ("Ingested", "取り込み日時"),
    "library.col.actions": ("Actions", "操作"),
    "library.access.save": ("Save", "保存"),
    "library.access.default": ("(default policy)", "（既定のポリシー）"),
    "library.delete": ("Delete", "削除"),
    "library.delete.confirm": ("Delete {doc} from the knowledge base?", "{doc} をナレッジベースから削除しますか？"),
    "library.empty": ("No documents yet: upload some.", "文書はまだありません。アップロードしてください。"),
    "jobs.title": ("Background jobs", "バックグラウンドジョブ"),
    "jobs.none": ("No jobs yet.", "ジョブはまだありません。"),
    "jobs.failed_files": ("Files that failed", "失敗したファイル"),
    "jobs.skipped_files": ("Files skipped", "スキップしたファイル"),
    "jobs.ingested": (
        "{added} added, {updated} updated, {unchanged} unchanged, {failed} failed",
        "追加 {added}・更新 {updated}・変更なし {unchanged}・失敗 {failed}",
    ),
    "jobs.state.running": ("running", "実行中"),
    "jobs.state.finished": ("finished", "完了"),
    "jobs.state.failed": ("failed", "失敗"),
    "jobs.state.interrupted": ("interrupted", "中断"),
    "jobs.starting": ("starting", "起動中"),
    "jobs.open_report": ("Open the report", "レポートを開く"),
    "eval.title": ("Evaluate", "評価"),
    "eval.questions": ("Question sets", "質問セット"),
    "eval.runs": ("Compare runs", "比較結果"),
    "eval.no_runs": ("No compare runs yet.", "比較結果はまだありません。"),
    "eval.no_questions": (
        "No question sets yet: infuse questions import or generate makes one.",
        "質問セットがありません。infuse questions import / generate で作成してください。",
    ),
    "eval.start": ("Start a comparison", "比較を開始"),
    "eval.set": ("Question set", "質問セット"),
    "eval.variants": ("Variants", "比較する方式"),
    "eval.limit": ("Questions (first N; empty: all)", "質問数（先頭N件。空欄で全件）"),
    "eval.adapter": ("Fine-tuning run (for ft variants)", "ファインチューニング実行（ft 用）"),
    "eval.button": ("Compare", "比較する"),
    "eval.report": ("Report", "レポート"),
    "eval.tune": ("Fine-tune the served model", "提供中のモデルをファインチューニング"),
    "eval.dataset": ("Training dataset", "学習データセット"),
    "eval.method": ("Method", "手法"),
    "eval.run_name": ("Run name (optional)", "実行名（任意）"),
    "eval.tune.button": ("Start fine-tuning", "ファインチューニング開始"),
    "eval.advice": ("Advice", "推奨"),
    "eval.reasons": ("Why", "理由"),
    "eval.next": ("Next steps", "次の手順"),
    "eval.col.run": ("Run", "実行名"),
    "eval.col.created": ("Created", "作成日時"),
    "eval.col.questions": ("Question set", "質問セット"),
    "eval.col.variants": ("Variants", "方式"),
    "eval.col.name": ("Name", "名前"),
    "admin.title": ("Admin", "管理"),
    "admin.users": ("Users", "ユーザー"),
    "admin.groups": ("Groups", "グループ"),
    "admin.audit": ("Audit log", "監査ログ"),
    "admin.failures": ("Failed sign-ins", "サインイン失敗"),
    "admin.user.name": ("User name", "ユーザー名"),
    "admin.user.admin": ("Admin", "管理者"),
    "admin.user.groups": ("Groups (comma-separated)", "グループ（カンマ区切り）"),
    "admin.user.add": ("Add user", "ユーザーを追加"),
    "admin.user.key_once": (
        "The key for {user} (shown once; give it to them):",
        "{user} のキー（一度だけ表示されます。本人に渡してください）:",
    ),
    "admin.user.rotate": ("New key", "キーを再発行"),
    "admin.user.revoke": ("Revoke keys", "キーを無効化"),
    "admin.user.remove": ("Remove", "削除"),
    "admin.group.name": ("Group name", "グループ名"),
    "admin.group.add": ("Add group", "グループを追加"),
    "admin.group.member": ("User to add", "追加するユーザー"),
    "admin.group.add_member": ("Add member", "メンバーを追加"),
    "admin.col.user": ("User", "ユーザー"),
    "admin.col.time": ("Time", "時刻"),
    "admin.col.route": ("Route", "ルート"),
    "admin.col.status": ("Status", "ステータス"),
    "admin.col.question": ("Question", "質問"),
    "admin.col.chunks": ("Chunks returned", "返したチャンク"),
    "admin.col.keys": ("Keys", "キー"),
    "admin.col.members": ("Members", "メンバー"),
    "admin.single_user": (
        "Users and groups need a server started with --auth.",
        "ユーザーとグループの管理には --auth で起動したサーバーが必要です。",
    ),
    "admin.audit_off": ("The audit log is off.", "監査ログは無効です。"),
    "error.title": ("Something went wrong", "エラーが発生しました"),
    "error.forbidden": ("This page is for admins.", "このページは管理者専用です。"),
    "error.not_found": ("Not found.", "見つかりません。"),
    "common.yes": ("yes", "はい"),
    "common.no": ("no", "いいえ"),
    "common.you": ("Signed in as {user}", "{user} としてサインイン中"),
    "common.admin": ("admin", "管理者"),
}


def pick_language(cookie: str | None, accept_language: str | None) -> UILanguage:
    """The page's language: the cookie, else the browser's preference, else English."""
    if cookie in (UILanguage.EN.value, UILanguage.JA.value):
        return UILanguage(cookie)
    best: tuple[float, int, UILanguage] | None = None
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in (UILanguage.EN.value, UILanguage.JA.value):
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        candidate = (quality, -position, UILanguage(primary))
        if quality > 0 and (best is None or candidate[:2] > best[:2]):
            best = candidate
    return best[2] if best is not None else UILanguage.EN


class Translator:
    """``t("chat.send")`` / ``t("doc.page", page=3)`` in one language (templates get it as ``t``)."""

    def __init__(self, language: UILanguage) -> None:
        self.language = language
        self._index = 0 if language is UILanguage.EN else 1

    def __call__(self, key: str, **values: object) -> str:
        pair = MESSAGES.get(key)
        text = pair[self._index] if pair is not None else key
        return text.format(**values) if values else text


__all__ = ["LANG_COOKIE", "MESSAGES", "Translator", "UILanguage", "pick_language"]
