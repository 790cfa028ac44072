"""The embedded default corpus, written by the project itself from a seed: headlines, watchlist, FAQ, items."""
from __future__ import annotations

import csv
import io
import json
import os
import random
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

BURST_ENTITY = "Contoso Bank"
BURST_DAY = date(2026, 10, 20)
LAST_DAY = date(2026, 10, 31)
DAYS = 60
LABELS = ("negative", "neutral", "positive")
BASE_MIX = {"negative": 0.22, "neutral": 0.48, "positive": 0.30}  # ~20/50/30 after the cap below
LABEL_NOISE = 0.03
BURST_SIZE = 15


@dataclass(frozen=True)
class SampleFiles:
    """Paths of the files `write_sample_data` wrote."""

    headlines: Path
    watchlist: Path
    faq: Path
    items: Path
    interactions: Path

    def all(self) -> tuple[Path, ...]:
        """Every file, in a fixed order."""
        return (self.headlines, self.watchlist, self.faq, self.items, self.interactions)


# --- financial headlines ---------------------------------------------------------------------------------------

COMPANIES: dict[str, dict] = {
    "Contoso Bank": {
        "aliases": ["Contoso", "CTSO"],
        "units": ["mortgage book", "card business", "wealth unit", "deposits"],
    },
    "Northwind Traders": {
        "aliases": ["Northwind", "NWTR"],
        "units": ["store sales", "online orders", "grocery arm", "wholesale unit"],
    },
    "Fabrikam": {
        "aliases": ["Fabrikam Inc", "FBKM"],
        "units": ["chip division", "factory output", "robotics unit", "industrial orders"],
    },
    "Tailspin Airlines": {
        "aliases": ["Tailspin", "TSPN"],
        "units": ["passenger traffic", "cargo business", "long-haul routes", "loyalty programme"],
    },
    "Litware": {
        "aliases": ["Litware Inc", "LTWR"],
        "units": ["cloud revenue", "subscriptions", "security software", "enterprise sales"],
    },
}

TEMPLATES: dict[str, list[str]] = {
    "negative": [
        "{co} shares plunge {pct}% after profit warning", "{co} issues profit warning as {unit} weakens",
        "Regulator fines {co} {amt} over compliance failures", "{co} to cut {jobs} jobs in cost-saving drive",
        "{co} announces layoffs as {unit} shrinks", "{co} downgraded to sell by analysts",
        "{co} misses estimates as {unit} slumps", "{co} swings to {q} loss", "{co}'s {unit} hit by weak demand",
        "{co} slashes full-year outlook", "{co} stock tumbles on disappointing guidance",
        "Investors dump {co} after revenue drop", "{co} suspends dividend amid mounting losses",
        "{co} faces lawsuit over {unit}", "{co} hit by costly data breach",
        "Rating agency cuts {co} outlook to negative", "{co} shares sink to multi-year low",
        "{co} writes down {amt} on failed acquisition", "Weak {unit} drags {co} to {q} loss",
        "{co} warns of shrinking margins", "Short sellers pile into {co} as debt mounts",
        "{co} loses key customer, stock falls {pct}%", "{co} delays results, shares slide {pct}%",
        "Analysts slash price target on {co}", "{co} misses revenue forecast for third straight quarter",
    ],
    "neutral": [
        "{co} to hold annual meeting on {weekday}", "{co} names new CFO", "{co} schedules {q} earnings call",
        "{co} appoints new director to its board", "{co} to present at investor conference in {city}",
        "{co} files quarterly report with regulators", "{co} confirms date of {q} results",
        "{co} opens office in {city}", "{co} completes planned reorganisation of {unit}",
        "{co} publishes annual sustainability report", "{co} to rename {unit}",
        "{co} hosts capital markets day in {city}", "{co} shareholders to vote on board nominees",
        "{co} updates its investor relations calendar", "{co} moves regional headquarters to {city}",
        "{co} announces management changes at {unit}", "{co} declines to comment on market speculation",
        "{co} reports {q} results in line with expectations", "{co} to webcast {q} results presentation on {weekday}",
        "{co} names head of {unit}", "{co} says chairman will stand for re-election",
    ],
    "positive": [
        "{co} beats estimates as {unit} surges", "{co} posts record revenue in {q}",
        "{co} upgraded to buy by analysts", "{co} raises dividend by {pct}%",
        "{co} shares jump {pct}% on strong results", "{co} lifts full-year guidance",
        "{co} profit soars on booming {unit}", "{co} wins {amt} contract", "{co} announces {amt} share buyback",
        "{co} stock hits all-time high", "Strong {unit} powers {co} to record quarter",
        "{co} tops forecasts and raises outlook", "Investors cheer {co}'s robust growth",
        "{co} rallies after blowout earnings", "{co} margins widen, beating expectations",
        "{co} secures landmark partnership deal", "{co}'s {unit} sees surging demand",
        "Analysts lift price target on {co}", "{co} returns to profit ahead of schedule",
        "{co} shares climb {pct}% as {unit} outperforms",
    ],
}

BURST_TEMPLATES = [
    "{co} faces fraud probe by financial regulator", "{co} CEO resigns amid accounting scandal",
    "{co} shares plunge {big}% as fraud allegations mount", "Regulators raid {co} offices in fraud investigation",
    "{co} halts share trading after auditor quits", "Depositors pull funds from {co} amid scandal",
    "{co} executives accused of hiding losses", "{co} credit rating slashed to junk",
    "{co} scraps dividend and warns of massive losses", "{co} bonds crash as fraud probe widens",
    "Prosecutors open criminal case against {co} managers", "{co} shares collapse {big}% in record rout",
    "{co} admits misstating profits for three years", "Panic selling wipes {amt} off {co} market value",
    "{co} board fires finance chief over fraud", "{co} plunges again as investigators widen fraud probe",
]

MARKET_TEMPLATES: dict[str, list[str]] = {
    "negative": [
        "Stocks slide as recession fears grow", "Markets tumble after weak jobs data",
        "Oil prices plunge on oversupply worries", "Bond yields spike and equities sink",
        "Global shares fall as trade tensions escalate", "Tech selloff drags {index} lower",
        "Consumer confidence slumps to {yr}-year low", "Factory orders drop for a {nth} month",
        "Currency crash rattles investors", "{index} slumps {small}% as {sector} stocks sell off",
        "{sector_cap} shares hit by fresh selling", "{index} suffers worst week since {yr_ago}",
    ],
    "neutral": [
        "Central bank to publish meeting minutes on {weekday}", "Treasury to auction {yr}-year notes",
        "Retail sales data due on {weekday}", "Exchange extends trading hours pilot",
        "Markets await inflation figures on {weekday}", "Regulator opens consultation on disclosure rules",
        "Finance ministers meet in {city}", "Index provider announces quarterly rebalance of {index}",
        "{index} ends flat ahead of {weekday} data", "{sector_cap} sector earnings season starts on {weekday}",
    ],
    "positive": [
        "Stocks rally as inflation cools", "Markets surge to record highs", "Investors cheer strong jobs report",
        "Global equities climb on rate cut hopes", "Consumer spending rebounds strongly",
        "Factory output beats forecasts", "Small caps soar as optimism returns",
        "{sector_cap} shares rally on upbeat economic data", "{index} gains {small}% as {sector} stocks rebound",
        "{index} notches best week since {yr_ago}",
    ],
}
PREFIXES = ("UPDATE: ", "BRIEF: ", "MARKETS: ")
SUFFIXES = (" - sources", " - report", ", filing shows", " in early trading", " on {weekday}", " in {city}")

SLOTS: dict[str, Sequence[str]] = {
    "weekday": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"),
    "city": ("Frankfurt", "Singapore", "Toronto", "Madrid", "Chicago", "Dublin", "Osaka", "Sydney"),
    "q": ("Q1", "Q2", "Q3", "Q4", "first-half", "third-quarter"),
    "nth": ("second", "third", "fourth"),
    "index": ("the Global 100 index", "the Tech 50", "the All-Share index", "the Midcap 400"),
    "sector": ("bank", "airline", "retail", "tech", "energy", "industrial"),
    "yr_ago": ("March", "last spring", "2024", "the pandemic"),
}


def _fill(rng: random.Random, template: str, co: str = "", unit: str = "") -> str:
    """A template with its slots filled from the slot pools and random numbers."""
    return template.format(
        co=co, unit=unit, pct=rng.randint(3, 14), big=rng.randint(18, 41),
        jobs=rng.choice((200, 350, 800, 1200, 2500)),
        amt=(f"${rng.choice((40, 120, 250, 600))}m" if rng.random() < 0.6
             else f"${rng.randint(1, 4)}.{rng.randint(1, 9)}bn"),
        yr=rng.choice((2, 3, 5, 10)), small=f"{rng.randint(1, 3)}.{rng.randint(0, 9)}",
        sector_cap=rng.choice(SLOTS["sector"]).title(),
        **{key: rng.choice(values) for key, values in SLOTS.items()},
    )


def _decorate(rng: random.Random, text: str) -> str:
    """Wire-style prefixes and suffixes shared by every sentiment, so the model must learn the words that matter."""
    roll = rng.random()
    if roll < 0.08:
        return rng.choice(PREFIXES) + text
    if roll < 0.3:
        suffix = _fill(rng, rng.choice(SUFFIXES))
        # 'on Friday on Friday' reads wrong: skip a suffix whose leading word the headline already uses.
        return text if suffix.split()[0].strip(",") in text.split() else text + suffix
    return text


def _mention(rng: random.Random, name: str) -> str:
    """How a headline names a company: its name, a short alias or its ticker, so entity matching is exercised."""
    aliases = COMPANIES[name]["aliases"]
    roll = rng.random()
    return name if roll < 0.55 else aliases[0] if roll < 0.8 else aliases[1]


def _day_labels(rng: random.Random, count: int) -> list[str]:
    """Labels for one company-day; negatives are capped at 40% so ordinary days never look like a spike."""
    labels = rng.choices(LABELS, weights=[BASE_MIX[label] for label in LABELS], k=count)
    cap = max(1, int(count * 0.4))
    for index in [i for i, label in enumerate(labels) if label == "negative"][cap:]:
        labels[index] = "neutral"
    return labels


def _timestamp(rng: random.Random, day: date, first_hour: int = 6, last_hour: int = 22) -> datetime:
    start = datetime(day.year, day.month, day.day, first_hour, tzinfo=timezone.utc)
    return start + timedelta(seconds=rng.randrange((last_hour - first_hour) * 3600))


def headline_rows(seed: int = 0) -> list[dict[str, str]]:
    """The headlines table: ~2,000 rows over 60 days, with label noise and one negative burst."""
    rng = random.Random(f"{seed}:headlines")
    rows: list[tuple[datetime, str, str]] = []
    for offset in range(DAYS):
        day = LAST_DAY - timedelta(days=DAYS - 1 - offset)
        for name, info in COMPANIES.items():
            for label in _day_labels(rng, rng.randint(3, 7)):
                text = _fill(rng, rng.choice(TEMPLATES[label]), _mention(rng, name), rng.choice(info["units"]))
                rows.append((_timestamp(rng, day), _decorate(rng, text), label))
        for _ in range(rng.randint(6, 10)):
            label = rng.choices(LABELS, weights=[0.3, 0.4, 0.3])[0]
            text = _fill(rng, rng.choice(MARKET_TEMPLATES[label]))
            rows.append((_timestamp(rng, day, 0, 24), _decorate(rng, text), label))
    for template in rng.sample(BURST_TEMPLATES, BURST_SIZE):
        text = _fill(rng, template, _mention(rng, BURST_ENTITY))
        rows.append((_timestamp(rng, BURST_DAY, 7, 21), text, "negative"))
    rows.sort(key=lambda row: (row[0], row[1]))
    out = []
    for index, (when, text, label) in enumerate(rows, start=1):
        if rng.random() < LABEL_NOISE:
            # Annotators disagree sometimes; noise never invents a negative, so it cannot plant a second burst.
            label = rng.choice([other for other in LABELS if other not in (label, "negative")])
        out.append({"id": f"h{index:05d}", "published_at": _iso(when), "text": text, "label": label})
    return out


def watchlist_data() -> dict:
    """The watchlist JSON: the five companies with their aliases and tickers."""
    return {"entities": [{"name": name, "kind": "company", "aliases": list(info["aliases"])}
                         for name, info in COMPANIES.items()]}


# --- customer-service FAQ --------------------------------------------------------------------------------------

FAQ: dict[str, tuple[str, list[str]]] = {
    "check_balance": (
        (
            "You can see the balance of account {{Account Number}} in the mobile app under Accounts or at any of "
            "our ATMs; it updates in real time."
        ),
        [
            "what's my account balance", "how much money do I have", "check my balance", "show me my current balance",
            "how much is in my checking account", "what is the balance on my savings",
            "how much money is left in my account", "tell me my available balance", "balance inquiry",
            "where do I see my balance in the app", "has my salary reached my balance yet",
            "how much can I spend right now",
        ],
    ),
    "reset_password": (
        (
            "Tap 'Forgot password' on the login screen and we will email a reset link to {{Email Address}}; the "
            "link is valid for 30 minutes."
        ),
        [
            "I forgot my password", "reset my password", "how do I change my online banking password",
            "I can't log in to the app", "my login is locked", "I need a new password",
            "the password reset link is not working", "how to recover my username and password",
            "locked out of online banking", "my account got locked after too many login attempts",
            "the app says my password is wrong",
        ],
    ),
    "lost_card": (
        (
            "I'm sorry to hear that. The card ending in {{Card Last Digits}} is now frozen so nobody can use it, "
            "and a replacement will reach you within 5 business days."
        ),
        [
            "I lost my card", "my debit card was stolen", "block my credit card", "I can't find my card",
            "freeze my card", "report a stolen card", "someone took my wallet with my bank card",
            "order a replacement card", "my card is missing", "cancel my lost card", "I left my card in a taxi",
        ],
    ),
    "open_account": (
        "You can open an account online in about 10 minutes with a photo ID and proof of address, or in any branch.",
        [
            "open a new account", "how do I open a savings account", "I want to become a customer",
            "sign up for a checking account", "what do I need to open an account", "can I open a joint account",
            "open an account for my child", "start a new bank account online",
            "which documents are required to open an account", "I'd like to join your bank",
        ],
    ),
    "close_account": (
        (
            "We're sorry to see you go. To close account {{Account Number}}, move the remaining balance out and "
            "confirm under Settings > Close account, or call {{Customer Support Phone Number}}."
        ),
        [
            "close my account", "I want to cancel my account", "how do I shut down my savings account",
            "terminate my checking account", "I'm leaving the bank, close everything", "delete my bank account",
            "end my membership with you", "stop my account permanently", "how to deactivate my account for good",
        ],
    ),
    "transfer_money": (
        (
            "In the app choose Payments > New transfer, enter the recipient's name and IBAN, and confirm. Transfers"
            " to our customers are instant; others arrive within one business day."
        ),
        [
            "send money to my friend", "transfer funds to another account", "how do I make a wire transfer",
            "move money between my accounts", "pay someone by bank transfer", "set up a recurring transfer",
            "what are the fees for an international transfer", "how long does a transfer take",
            "send 100 dollars to my sister", "wire cash abroad",
        ],
    ),
    "loan_rates": (
        (
            "Personal loans currently start at {{Loan Rate}} APR; mortgage rates depend on the term and deposit. "
            "Ask for a personal quote any time."
        ),
        [
            "what are your loan interest rates", "current mortgage rates", "how much interest on a personal loan",
            "car loan APR", "do you offer home loans", "what rate would I get for a loan", "compare your loan rates",
            "is the mortgage rate fixed or variable", "how expensive is borrowing money from you",
            "interest rate for a student loan",
        ],
    ),
    "opening_hours": (
        (
            "Most branches open Monday to Friday 9:00-17:00 and Saturday 9:00-13:00. Find your branch's hours at "
            "{{Branch Locator URL}}."
        ),
        [
            "what time do you open", "when does the branch close", "are you open on Saturday", "branch opening hours",
            "what are your hours today", "is the bank open on Sunday", "holiday opening times",
            "until what time is the branch open", "when can I visit a branch", "are branches open late on Thursdays",
        ],
    ),
    "update_address": (
        (
            "You can change your address in the app under Profile > Personal details; we'll text a confirmation "
            "code to {{Phone Number}}."
        ),
        [
            "change my address", "I moved, update my address", "update my mailing address",
            "set a new home address for my account", "how do I change the address on file", "edit my postal address",
            "my address is wrong, fix it", "I relocated, where do I update my details",
            "new street address after moving house",
        ],
    ),
    "dispute_charge": (
        (
            "Open the transaction in the app and tap 'Dispute', or tell me the amount and date, and we'll "
            "investigate the charge on the card ending {{Card Last Digits}} within 10 business days."
        ),
        [
            "I don't recognize this charge", "dispute a transaction", "there's a payment I didn't make",
            "refund a wrong charge", "I was charged twice", "report an unauthorized transaction",
            "challenge a card payment", "a merchant overcharged me", "there is a strange purchase on my statement",
            "I want my money back for a fraudulent payment",
        ],
    ),
    "human_agent": (
        (
            "Sure, I'm connecting you with one of our agents. You can also call {{Customer Support Phone Number}}, "
            "Monday to Saturday, 8:00-20:00."
        ),
        [
            "talk to a human", "speak to a real person", "connect me with an agent",
            "I want a customer service representative", "can I call someone", "transfer me to a live agent",
            "is there a person I can talk to", "get me an operator", "I'd rather chat with a staff member",
            "put me through to support staff",
        ],
    ),
    "greeting": (
        "Hello! I'm your virtual banking assistant. How can I help you today?",
        [
            "hi", "hello", "hey there", "good morning", "good afternoon", "hi bot", "hello, anyone there", "hey",
            "greetings", "howdy", "good evening", "hiya",
        ],
    ),
}

OPENERS = ("", "", "", "", "excuse me, ", "quick question: ", "can you help? ", "I need help: ", "please, ", "sorry, ")
ENDINGS = ("", "", "?", " please", " thanks", " asap", "!", " thank you")
GREETING_ENDINGS = ("", "!", " :)", " there", ", how are you", "!!", " friend", " again")
QUESTIONS_PER_INTENT = 40


def _typo(rng: random.Random, text: str) -> str:
    """Swap two neighbouring letters in one longer word, like a hurried typist."""
    words = text.split(" ")
    long_words = [i for i, word in enumerate(words) if len(word) >= 5 and word.isalpha()]
    if not long_words:
        return text
    i = rng.choice(long_words)
    word = words[i]
    j = rng.randrange(1, len(word) - 2)
    words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2:]
    return " ".join(words)


def faq_entries(seed: int = 0) -> list[dict]:
    """One entry per intent with ~40 paraphrased questions built from openers, cores, endings, case and typos."""
    rng = random.Random(f"{seed}:faq")
    entries = []
    for intent, (answer, cores) in FAQ.items():
        openers, endings = (("",), GREETING_ENDINGS) if intent == "greeting" else (OPENERS, ENDINGS)
        candidates = sorted({f"{o}{c}{e}" for o in openers for c in cores for e in endings})
        questions: list[str] = []
        for question in rng.sample(candidates, len(candidates)):
            if rng.random() < 0.25:
                question = question.lower()
            elif rng.random() < 0.1:
                question = question[0].upper() + question[1:]
            if rng.random() < 0.1:
                question = _typo(rng, question)
            if question not in questions:
                questions.append(question)
            if len(questions) == QUESTIONS_PER_INTENT:
                break
        entries.append({"intent": intent, "answer": answer, "questions": questions})
    return entries


# --- recommendation items and interactions ---------------------------------------------------------------------

CATEGORIES: dict[str, dict[str, Sequence[str]]] = {
    "travel": {
        "topics": (
            "Lisbon", "Kyoto", "the Scottish Highlands", "Patagonia", "Iceland", "Morocco", "the Amalfi Coast",
            "Vietnam", "the Alps", "Vancouver",
        ),
        "things": ("itinerary", "weekend guide", "road trip", "packing list", "backpacking route", "train journey"),
        "tags": (
            "travel", "itinerary", "budget-travel", "backpacking", "road-trip", "city-break", "adventure", "packing",
        ),
        "audience": ("backpackers", "families on holiday", "solo travellers"),
        "detail": (
            "where to stay, what to eat and how to get around", "cheap flights, local trains and scenic viewpoints",
            "hostels, hiking trails and day trips",
        ),
    },
    "cooking": {
        "topics": (
            "weeknight pasta", "sourdough bread", "vegetarian curries", "one-pan dinners", "fermented vegetables",
            "meal prep", "homemade pizza", "spicy noodles", "french pastries", "summer salads",
        ),
        "things": ("recipe", "technique", "cookbook pick", "kitchen method", "flavour guide"),
        "tags": ("recipes", "baking", "vegetarian", "meal-prep", "quick-dinners", "spices", "kitchen-tips"),
        "audience": ("home cooks", "busy families", "beginner bakers"),
        "detail": (
            "ingredients, oven temperatures and seasoning", "dough hydration, proofing and crust",
            "knife skills, sauces and spices",
        ),
    },
    "personal finance": {
        "topics": (
            "emergency funds", "index funds", "paying off credit card debt", "retirement savings",
            "household budgets", "first-time home buying", "tax-free savings accounts", "side income",
        ),
        "things": ("budget", "savings plan", "money checklist", "investing strategy", "debt plan"),
        "tags": ("budgeting", "saving", "investing", "debt", "retirement", "taxes", "money-tips"),
        "audience": ("young professionals", "new parents", "freelancers"),
        "detail": (
            "interest rates, fees and compound growth", "monthly budgets, savings goals and debt payoff",
            "pensions, tax allowances and portfolios",
        ),
    },
    "fitness": {
        "topics": (
            "marathon training", "home workouts", "strength training", "yoga for runners", "interval training",
            "mobility routines", "cycling endurance", "core stability",
        ),
        "things": ("workout", "routine", "training plan", "exercise series", "stretching session"),
        "tags": ("fitness", "running", "strength", "yoga", "hiit", "mobility", "cardio"),
        "audience": ("beginners", "runners", "busy commuters"),
        "detail": ("sets, reps and rest days", "heart rate zones, pacing and recovery", "squats, lunges and planks"),
    },
    "tech": {
        "topics": (
            "home networking", "password managers", "mechanical keyboards", "Linux laptops", "smart home hubs",
            "photo backup", "noise-cancelling headphones", "budget smartphones",
        ),
        "things": ("review", "setup guide", "comparison", "buying guide", "benchmark"),
        "tags": ("gadgets", "reviews", "privacy", "software", "hardware", "smart-home", "laptops"),
        "audience": ("tinkerers", "remote workers", "students"),
        "detail": (
            "battery life, firmware updates and specs", "routers, encryption and backups",
            "drivers, open-source apps and benchmarks",
        ),
    },
    "gardening": {
        "topics": (
            "tomato growing", "balcony herb gardens", "composting", "raised beds", "houseplant care", "pruning roses",
            "attracting pollinators", "winter vegetables",
        ),
        "things": ("planting guide", "planting calendar", "growing tips", "garden project", "soil guide"),
        "tags": ("gardening", "plants", "vegetables", "compost", "houseplants", "flowers", "seeds"),
        "audience": ("urban gardeners", "allotment holders", "first-time growers"),
        "detail": (
            "soil, seedlings and watering", "mulch, pruning shears and compost bins",
            "pollinators, bulbs and seed trays",
        ),
    },
    "music": {
        "topics": (
            "guitar chords", "jazz piano voicings", "home recording", "music theory basics", "vinyl collecting",
            "songwriting", "ukulele strumming", "classic rock albums",
        ),
        "things": ("lesson", "playlist", "practice routine", "album guide", "listening session"),
        "tags": ("music", "guitar", "piano", "recording", "theory", "vinyl", "songwriting"),
        "audience": ("beginner musicians", "hobby producers", "music lovers"),
        "detail": (
            "scales, chord progressions and rhythm", "microphones, mixing and melodies",
            "records, turntables and B-sides",
        ),
    },
    "kids": {
        "topics": (
            "rainy day crafts", "bedtime stories", "science experiments at home", "toddler sleep routines",
            "family board games", "screen time limits", "outdoor scavenger hunts", "learning to read",
        ),
        "things": ("activity", "idea list", "printable", "family game", "parenting tip"),
        "tags": ("kids", "parenting", "crafts", "family", "education", "play", "toddlers"),
        "audience": ("parents", "teachers", "grandparents"),
        "detail": (
            "glue, paper and glitter", "picture books, phonics and bedtime", "toddlers, playgrounds and nap times",
        ),
    },
}
TITLE_TEMPLATES = (
    "The complete {thing} for {topic}", "{topic_cap}: a {thing} for {audience}", "Getting started with {topic}",
    "{n} lessons from a year of {topic}", "Our favourite {thing} for {topic}", "{topic_cap} without the fuss",
)
ITEMS_PER_CATEGORY = 25
FRESH_PER_CATEGORY = 1
EVENTS = ("view", "click", "like", "purchase")
EVENT_WEIGHTS = (0.55, 0.25, 0.12, 0.08)
USERS = 120


def item_rows(seed: int = 0) -> list[dict[str, str]]:
    """~200 items in 8 categories; the last one of each category was created in the final days (cold start)."""
    rng = random.Random(f"{seed}:items")
    window_start = LAST_DAY - timedelta(days=DAYS - 1)
    drafts = []
    for category, vocab in CATEGORIES.items():
        titles: set[str] = set()
        for index in range(ITEMS_PER_CATEGORY):
            for _attempt in range(100):  # titles are unique within a category
                topic, thing, audience = (rng.choice(vocab[key]) for key in ("topics", "things", "audience"))
                title = rng.choice(TITLE_TEMPLATES).format(topic=topic, topic_cap=topic[0].upper() + topic[1:],
                                                          thing=thing, audience=audience, n=rng.randint(3, 12))
                if title not in titles:
                    break
            titles.add(title)
            tags = rng.sample(list(vocab["tags"]), 3)
            description = (f"A {thing} about {topic} for {audience}, covering {rng.choice(vocab['detail'])}. "
                           f"Tagged {', '.join(tags)}.")
            fresh = index >= ITEMS_PER_CATEGORY - FRESH_PER_CATEGORY
            if fresh:  # created in the final days, after every interaction was drawn
                created = _midnight(LAST_DAY) - timedelta(hours=rng.randint(1, 60))
            else:
                created = _midnight(window_start) - timedelta(days=rng.randint(1, 120), seconds=rng.randrange(86400))
            drafts.append((created, title, description, "|".join(tags), category))
    drafts.sort()
    return [{"id": f"i{index:04d}", "title": title, "description": description, "tags": tags, "category": category,
             "created_at": _iso(created)}
            for index, (created, title, description, tags, category) in enumerate(drafts, start=1)]


def interaction_rows(items: list[dict[str, str]], seed: int = 0) -> list[dict[str, str]]:
    """~120 users with 1-2 preferred categories; 15-40 events each, ~85% inside their preferences."""
    rng = random.Random(f"{seed}:interactions")
    window_start = _midnight(LAST_DAY - timedelta(days=DAYS - 1))
    newest_allowed = _iso(window_start)
    by_category: dict[str, list[str]] = {}
    for item in items:
        if item["created_at"] < newest_allowed:  # fresh items get no interactions: they are the cold-start case
            by_category.setdefault(item["category"], []).append(item["id"])
    categories = sorted(by_category)
    rows: set[tuple[str, str, str, str]] = set()
    for user in range(1, USERS + 1):
        preferred = rng.sample(categories, rng.choice((1, 2)))
        others = [c for c in categories if c not in preferred]
        for _ in range(rng.randint(15, 40)):
            category = rng.choice(preferred) if rng.random() < 0.85 else rng.choice(others)
            when = window_start + timedelta(seconds=rng.randrange(DAYS * 86400))
            event = rng.choices(EVENTS, weights=EVENT_WEIGHTS)[0]
            rows.add((_iso(when), f"u{user:03d}", rng.choice(by_category[category]), event))
    return [{"user_id": user, "item_id": item, "event": event, "value": "1.0", "occurred_at": when}
            for when, user, item, event in sorted(rows)]


# --- writing ---------------------------------------------------------------------------------------------------

def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _csv_text(rows: list[dict[str, str]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _write_if_changed(path: Path, text: str) -> None:
    """Write atomically, and not at all when the bytes are already there (re-runs leave files untouched)."""
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
    os.replace(handle.name, path)


def write_sample_data(out_dir: Path, seed: int = 0) -> SampleFiles:
    """Write the sample corpus into `out_dir`; the same seed always gives byte-identical files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = SampleFiles(out_dir / "headlines.csv", out_dir / "watchlist.json", out_dir / "faq.jsonl",
                        out_dir / "items.csv", out_dir / "interactions.csv")
    items = item_rows(seed)
    _write_if_changed(files.headlines, _csv_text(headline_rows(seed), ("id", "published_at", "text", "label")))
    _write_if_changed(files.watchlist, json.dumps(watchlist_data(), indent=2) + "\n")
    _write_if_changed(files.faq, "".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in faq_entries(seed)))
    _write_if_changed(files.items, _csv_text(items, ("id", "title", "description", "tags", "category", "created_at")))
    _write_if_changed(files.interactions, _csv_text(interaction_rows(items, seed),
                                                    ("user_id", "item_id", "event", "value", "occurred_at")))
    return files
