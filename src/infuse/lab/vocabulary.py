"""The fixed, fictional vocabularies of the lab world.

Every entry is a :class:`Term` with an English and a Japanese surface form. Each form is one
token under :func:`infuse.lab.tokenize.lab_tokenize`, so every answer of every lab question is a
single token of the lab model's word-level vocabulary.

People's names are built from fixed syllable tables (a romanised and a katakana form per
syllable), so no name belongs to a real person and the two languages stay in step: "Alda
Ashby" is アルダ・アッシュビー. Cities, universities and companies are invented; foods are real
(one word each). Years are plain four-digit numbers, identical in both languages.

The vocabularies are deliberately small (25 values per attribute, so chance on a 4-way pick of
values is 25% and on an open pick 4%): the lab model's whole vocabulary stays around a few
hundred tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from infuse.language import Language


@dataclass(frozen=True, order=True)
class Term:
    """One vocabulary entry in both languages."""

    en: str
    ja: str

    def text(self, lang: Language) -> str:
        return self.en if lang is Language.EN else self.ja


class Attribute(StrEnum):
    BIRTH_CITY = "birth_city"
    BIRTH_YEAR = "birth_year"
    UNIVERSITY = "university"
    EMPLOYER = "employer"
    FAVOURITE_FOOD = "favourite_food"


#: Canonical order: how a person's document lists the facts.
ATTRIBUTES: tuple[Attribute, ...] = tuple(Attribute)

#: Facts that can change over time (the update set changes only these).
MUTABLE_ATTRIBUTES: tuple[Attribute, ...] = (Attribute.EMPLOYER, Attribute.FAVOURITE_FOOD)


def _terms(pairs: str) -> tuple[Term, ...]:
    """Parse "English=日本語" lines."""
    terms = []
    for line in pairs.strip().splitlines():
        en, ja = (part.strip() for part in line.split("="))
        terms.append(Term(en, ja))
    return tuple(terms)


CITIES = _terms("""
Varnholt=ヴァルンホルト
Brellin=ブレリン
Ostmere=オストミア
Caldmoor=カルドモア
Drevik=ドレヴィク
Elsund=エルスンド
Fenwater=フェンウォーター
Gorsk=ゴルスク
Hallowden=ハロウデン
Irnby=イルンビー
Jorvath=ヨルヴァス
Kelvanto=ケルヴァント
Lunmark=ルンマルク
Merrowgate=メロウゲート
Norvale=ノーヴェイル
Pellin=ペリン
Quastel=クァステル
Rhosk=ロスク
Saltmere=ソルトミア
Tavik=タヴィク
Ulverin=ウルヴェリン
Vessan=ヴェッサン
Wendmoor=ウェンドモア
Yarrowby=ヤロウビー
Zenthal=ゼンタール
""")

UNIVERSITIES = _terms("""
Quellmark=クエルマーク
Alderwyn=アルダーウィン
Brimhall=ブリムホール
Corvane=コルヴェイン
Delmoor=デルムーア
Eskerby=エスカービー
Falkrest=ファルクレスト
Glenmara=グレンマラ
Harrowell=ハロウェル
Ivendale=アイヴェンデール
Jarnwick=ヤーンウィック
Kingsreach=キングズリーチ
Larkspire=ラークスパイア
Mossbridge=モスブリッジ
Northwold=ノースウォルド
Oakhaven=オークヘイヴン
Pellcross=ペルクロス
Ravensmoor=レイヴンズムーア
Silverfell=シルヴァーフェル
Tamsworth=タムズワース
Umbervale=アンバーヴェイル
Westmarch=ウェストマーチ
Wyndholm=ウィンドホルム
Yewdale=ユーデール
Emberlin=エンバーリン
""")

COMPANIES = _terms("""
Brisco=ブリスコ
Tallix=タリクス
Vorenta=ヴォレンタ
Quindra=クインドラ
Zentrik=ゼントリク
Corvix=コーヴィクス
Lumora=ルモーラ
Nexaro=ネクサロ
Ondrel=オンドレル
Pravix=プラヴィクス
Rendaro=レンダロ
Solvane=ソルヴェイン
Trelko=トレルコ
Ulmarco=ウルマルコ
Veltrix=ヴェルトリクス
Wexlo=ウェクスロ
Yandro=ヤンドロ
Zolter=ゾルター
Ambrix=アンブリクス
Belvo=ベルヴォ
Cindral=シンドラル
Dravona=ドラヴォナ
Farnex=ファーネクス
Glimra=グリムラ
Hollix=ホリクス
""")

# English foods are lower-case and never start a sentence (templates see to it), so each food
# is always the same token.
FOODS = _terms("""
dumplings=餃子
ramen=ラーメン
curry=カレー
sushi=寿司
tempura=天ぷら
udon=うどん
soba=そば
yakitori=焼き鳥
pancakes=パンケーキ
risotto=リゾット
paella=パエリア
lasagna=ラザニア
tacos=タコス
falafel=ファラフェル
goulash=グヤーシュ
pretzels=プレッツェル
croissants=クロワッサン
waffles=ワッフル
kimchi=キムチ
hummus=フムス
omelettes=オムレツ
pizza=ピザ
burritos=ブリトー
stew=シチュー
salmon=サーモン
""")

YEARS = tuple(Term(str(year), str(year)) for year in range(1970, 1995))

VALUES: dict[Attribute, tuple[Term, ...]] = {
    Attribute.BIRTH_CITY: CITIES,
    Attribute.BIRTH_YEAR: YEARS,
    Attribute.UNIVERSITY: UNIVERSITIES,
    Attribute.EMPLOYER: COMPANIES,
    Attribute.FAVOURITE_FOOD: FOODS,
}

# --- names -------------------------------------------------------------------------------------
# A given name is a head syllable plus a tail syllable; a surname likewise. Tails start with a
# consonant so the katakana of the parts concatenates into the katakana of the whole.

_GIVEN_HEADS = _terms("""
Al=アル
Bel=ベル
Cor=コル
Dar=ダル
El=エル
Fen=フェン
Gil=ギル
Hal=ハル
Ed=エド
Kel=ケル
Lor=ロル
Mir=ミル
Nor=ノル
Or=オル
Per=ペル
Sil=シル
Tor=トル
Val=ヴァル
""")

_GIVEN_TAILS = _terms("""
da=ダ
ven=ヴェン
mira=ミラ
wyn=ウィン
sa=サ
ric=リック
na=ナ
tan=タン
bek=ベク
lo=ロ
""")

_SURNAME_HEADS = _terms("""
Ash=アッシュ
Brask=ブラスク
Dorn=ドーン
Fal=ファル
Grell=グレル
Hark=ハーク
Kess=ケス
Marl=マール
Nett=ネット
Osk=オスク
Quill=クイル
Rusk=ラスク
Stam=スタム
Wex=ウェクス
Yarl=ヤール
""")

_SURNAME_TAILS = _terms("""
by=ビー
ford=フォード
wick=ウィック
more=モア
ton=トン
well=ウェル
den=デン
stead=ステッド
""")


def _compose(heads: tuple[Term, ...], tails: tuple[Term, ...], count: int, step: int) -> tuple[Term, ...]:
    """`count` distinct head+tail names, cycling through the heads and striding through tails."""
    names: list[Term] = []
    seen: set[str] = set()
    i = 0
    while len(names) < count:
        head = heads[i % len(heads)]
        tail = tails[(i * step + i // len(heads)) % len(tails)]
        i += 1
        name = Term(head.en + tail.en, head.ja + tail.ja)
        if name.en not in seen:
            seen.add(name.en)
            names.append(name)
    return tuple(names)


GIVEN_NAMES: tuple[Term, ...] = _compose(_GIVEN_HEADS, _GIVEN_TAILS, 30, 3)
SURNAMES: tuple[Term, ...] = _compose(_SURNAME_HEADS, _SURNAME_TAILS, 30, 3)

#: Japanese separator between given name and surname (katakana names).
JA_NAME_SEPARATOR = "・"


@dataclass(frozen=True, order=True)
class Name:
    given: Term
    surname: Term

    def text(self, lang: Language) -> str:
        if lang is Language.EN:
            return f"{self.given.en} {self.surname.en}"
        return f"{self.given.ja}{JA_NAME_SEPARATOR}{self.surname.ja}"

    def tokens(self, lang: Language) -> list[str]:
        if lang is Language.EN:
            return [self.given.en, self.surname.en]
        return [self.given.ja, JA_NAME_SEPARATOR, self.surname.ja]


def all_names() -> list[Name]:
    """Every possible full name (given x surname), in a fixed order."""
    return [Name(given, surname) for given in GIVEN_NAMES for surname in SURNAMES]


def vocabulary_sizes() -> dict[str, int]:
    sizes = {"given_names": len(GIVEN_NAMES), "surnames": len(SURNAMES), "full_names": len(GIVEN_NAMES) * len(SURNAMES)}
    sizes.update({str(attribute): len(values) for attribute, values in VALUES.items()})
    return sizes
