"""Dataset preparation recipes on small hand-made raw files, and on real samples against pandas brute force.

Expected outputs are worked out by hand in the comments, or by a plain-pandas implementation of the
written rules (GRU4Rec reference notes 1.12; sequential notes section 3), never taken from the code.
"""
import json
import os
from datetime import datetime, timezone

import pandas as pd
import pytest

from nextitem.cli import main
from nextitem.config import ConfigError
from nextitem.data import DataError
from nextitem.data.recipes import prepare, workspace
from nextitem.data.recipes.session_rules import split_by_end
from nextitem.data.recipes.workspace import Workspace

DATA = os.environ.get("NEXTITEM_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
DIGINETICA_SAMPLE = os.path.join(DATA, "raw", "diginetica_train-item-views_sample.csv")
ML100K = os.path.join(DATA, "sequences", "ml-100k")
RSC15_100K = os.path.join(DATA, "sessions", "rsc15_100k")

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000  # milliseconds
T0 = 1_451_606_400_000  # 2016-01-01T00:00:00Z in ms
FILES = ("train_full.tsv", "test.tsv", "train_tr.tsv", "train_valid.tsv")


def read(out, name):
    return pd.read_csv(os.path.join(out, name), sep="\t", dtype={"ItemId": str})


def sessions_of(df):
    """{SessionId: [(item, time), ...]} in file order."""
    return {s: list(zip(g.ItemId, g.Time)) for s, g in df.groupby("SessionId", sort=False)}


def write_diginetica(path, sessions):
    """sessions: {id: [(item, ms), ...]} -> the CIKM16 layout. Every event carries the date of the
    session's first event and timeframe = ms since that midnight, so the recipe's Time equals ms."""
    lines = ["session_id;user_id;item_id;timeframe;eventdate"]
    for sid, events in sessions.items():
        midnight = min(t for _, t in events) // DAY * DAY
        date = datetime.fromtimestamp(midnight / 1000, timezone.utc).strftime("%Y-%m-%d")
        lines += [f"{sid};NA;{item};{t - midnight};{date}" for item, t in events]
    path.write_text("\n".join(lines) + "\n")
    return path


def iso(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ---------------------------------------------------------------- common session rules

def test_consecutive_repeats_dropped_within_a_session_only(tmp_path):
    # each session c a a b a c c -> c a b a c: (i,i) collapses, the later a and c stay, and a session
    # starting with the item the previous one ended with keeps it
    raw = {s: [(i, T0 + s * HOUR + k * MIN) for k, i in enumerate("caabacc")] for s in range(1, 6)}
    stats = prepare("diginetica", [write_diginetica(tmp_path / "v.csv", raw)], tmp_path / "out",
                    tsplit=T0 + 30 * DAY, test_days=7)
    got = sessions_of(read(tmp_path / "out", "train_full.tsv"))
    assert got == {s: [(i, T0 + s * HOUR + k * MIN) for k, i in zip((0, 1, 3, 4, 5), "cabac")] for s in range(1, 6)}
    assert stats["steps"]["after dropping consecutive repeats"] == 25


def test_ties_keep_raw_row_order_not_item_order(tmp_path):
    # yoochoose times are whole seconds: rows 9 then 1 in the same second stay 9, 1 (an item-id
    # tie-break would give 1, 9), and a b a in one second is not turned into a a b -> a b
    rows = []
    for s in range(1, 6):
        t = T0 + s * HOUR
        rows += [(s, iso(t), "9"), (s, iso(t + 1), "1"), (s, iso(t + 2000), "a"), (s, iso(t + 2001), "b"),
                 (s, iso(t + 2002), "a")]
    clicks = tmp_path / "clicks.dat"
    clicks.write_text("".join(f"{s},{t},{i},0\n" for s, t, i in rows))
    prepare("yoochoose", [clicks], tmp_path / "out", tsplit=(T0 + 30 * DAY) // 1000)
    got = sessions_of(read(tmp_path / "out", "train_full.tsv"))
    for s in range(1, 6):
        t = (T0 + s * HOUR) // 1000
        assert got[s] == [("9", t), ("1", t), ("a", t + 2), ("b", t + 2), ("a", t + 2)]


def _gap_events(offset):
    """One visitor's views (ms after ``offset``) and the sessions expected from them."""
    views = [("a", 0), ("b", 30 * MIN), ("c", 90 * MIN),          # gap of exactly 1 h: same session
             ("a", 150 * MIN + 1), ("b", 160 * MIN + 1),          # gap of 1 h + 1 ms: a new session
             ("c", 300 * MIN), ("a", 400 * MIN)]                  # 100 min apart, an add-to-cart between
    cart = [("c", 350 * MIN)]
    return [(i, offset + t) for i, t in views], [(i, offset + t) for i, t in cart]


@pytest.mark.parametrize("bucket_rows", [None, 7])
def test_sessions_by_user_and_one_hour_gap_on_all_events(tmp_path, monkeypatch, bucket_rows):
    if bucket_rows:  # sessions cut one bucket of users at a time; session ids must still be unique
        monkeypatch.setattr(workspace, "ROWS_PER_BUCKET", bucket_rows)
    lines = ["timestamp,visitorid,event,itemid,transactionid"]
    expected = []
    for v in range(5):
        offset = 1_430_000_000_000 + v * DAY
        views, cart = _gap_events(offset)
        lines += [f"{t},v{v},view,{i}," for i, t in views] + [f"{t},v{v},addtocart,{i}," for i, t in cart]
        # another visitor in between, at the same times: never merged into v's sessions
        lines += [f"{offset + 10 * MIN},w{v},view,b,", f"{offset + 20 * MIN},w{v},view,c,"]
        expected += [views[:3], views[3:5], views[5:], [("b", offset + 10 * MIN), ("c", offset + 20 * MIN)]]
    (tmp_path / "events.csv").write_text("\n".join(lines) + "\n")
    # RetailRocket measures the gaps on all events (the add-to-cart bridges the last two views)
    prepare("retailrocket", [tmp_path / "events.csv"], tmp_path / "out")
    got = read(tmp_path / "out", "train_full.tsv")
    assert sorted(sessions_of(got).values()) == sorted(expected)
    assert read(tmp_path / "out", "test.tsv").empty
    assert got.SessionId.is_monotonic_increasing


def test_rees46_sessions_on_views_only(tmp_path):
    # the same pattern in seconds: on views only, c@300min and a@400min are 100 min apart -> two
    # sessions of length 1, dropped
    lines = ["event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"]
    expected = []
    for u in range(5):
        offset = 1_569_888_000_000 + u * DAY  # 2019-10-01
        views, cart = _gap_events(offset)
        views = [(i, t // 1000 * 1000 + (1000 if t % 1000 else 0)) for i, t in views]  # +1 ms -> +1 s
        stamp = lambda t: datetime.fromtimestamp(t / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines += [f"{stamp(t)},view,{i},1,,,1.0,{u},x" for i, t in views]
        lines += [f"{stamp(t)},cart,{i},1,,,1.0,{u},x" for i, t in cart]
        expected += [[(i, t // 1000) for i, t in views[:3]], [(i, t // 1000) for i, t in views[3:5]]]
    (tmp_path / "2019-Oct.csv").write_text("\n".join(lines) + "\n")
    prepare("rees46", [tmp_path / "2019-Oct.csv"], tmp_path / "out")
    assert sorted(sessions_of(read(tmp_path / "out", "train_full.tsv")).values()) == sorted(expected)


def test_coveo_gaps_count_pageviews_without_a_product(tmp_path):
    # detail a, a pageview 50 min later (no product), detail b 50 min after that: one session
    # (the gaps are measured on all events); detail c 61 min after b: a new session [c, a]
    lines = ["session_id_hash,event_type,product_action,product_sku_hash,server_timestamp_epoch_ms,hashed_url"]
    expected = []
    for u in range(5):
        t = 1_546_300_800_000 + u * DAY
        events = [("a", t), ("b", t + 100 * MIN), ("c", t + 161 * MIN), ("a", t + 162 * MIN)]
        lines += [f"h{u},event_product,detail,{i},{ts},url" for i, ts in events]
        lines += [f"h{u},pageview,,,{t + 50 * MIN},url"]
        expected += [events[:2], events[2:]]
    (tmp_path / "browsing_train.csv").write_text("\n".join(lines) + "\n")
    prepare("coveo", [tmp_path / "browsing_train.csv"], tmp_path / "out", test_days=30)
    got = pd.concat([read(tmp_path / "out", "train_full.tsv"), read(tmp_path / "out", "test.tsv")])
    assert sorted(sessions_of(got).values()) == sorted(expected)


def test_filtering_repeats_until_stable(tmp_path):
    # round 1: z has 4 events -> dropped; S1 = [x] and Z2..Z4 = [q] are left with length 1
    # round 2: those sessions go; x falls to 4 events -> dropped; T1..T4 = [w]
    # round 3: T1..T4 go; w falls to 1 -> dropped; U1 = [p]
    # round 4: U1 goes; p has 5 (B1..B5) -> stays.  round 5: no change.
    # A single pass would have kept x, w and their sessions.
    spec = {"S1": "zx", "Z2": "zq", "Z3": "zq", "Z4": "zq", **{f"T{k}": "xw" for k in range(1, 5)}, "U1": "wp",
            **{f"B{k}": "pq" for k in range(1, 6)}}
    raw = {n: [(i, T0 + n * HOUR + k * MIN) for k, i in enumerate(spec[name])] for n, name in enumerate(spec, 1)}
    stats = prepare("diginetica", [write_diginetica(tmp_path / "v.csv", raw)], tmp_path / "out",
                    tsplit=T0 + 30 * DAY, test_days=7)
    got = sessions_of(read(tmp_path / "out", "train_full.tsv"))
    b_ids = [n for n, name in enumerate(spec, 1) if name.startswith("B")]
    assert got == {n: raw[n] for n in b_ids}
    assert stats["steps"]["filter rounds"] == 5


# ---------------------------------------------------------------- the time split

@pytest.fixture(scope="module")
def split_out(tmp_path_factory):
    d = tmp_path_factory.mktemp("split")
    tsplit = T0 + 60 * DAY
    b1, b2 = tsplit - DAY, tsplit - 2 * DAY  # test_days=1
    raw = {
        1: [("p", b1 - 3 * HOUR), ("q", b1 - 2 * HOUR)],                    # A: before b1, starts after b2
        2: [("p", b1 - 30 * MIN), ("q", b1 - 10 * MIN), ("r", b1 + 10 * MIN)],  # B: straddles b1
        3: [("q", b1 - 5 * MIN), ("p", b1 + 5 * MIN), ("r", b1 + 15 * MIN)],    # C: straddles b1, 1 event before
        4: [("p", b1), ("q", b1 + MIN)],                                      # H: starts exactly at b1
        5: [("q", b1 - MIN), ("p", b1)],                                      # I: its event at b1 is not train
        6: [("p", b2 - 10 * MIN), ("q", b2 + 10 * MIN)],                      # E: straddles b2
        7: [("p", b2 - 20 * MIN), ("q", b2 - 10 * MIN), ("r", b2 + 10 * MIN)],  # F: straddles b2
        **{10 + k: [("r", b1 + k * HOUR), ("p", b1 + k * HOUR + MIN), ("z", b1 + k * HOUR + 2 * MIN)]
           for k in range(1, 6)},                                            # D1..D5: test; z only here
        **{20 + k: [("p", b2 - 5 * DAY + k * HOUR), ("q", b2 - 5 * DAY + k * HOUR + MIN),
                    ("r", b2 - 5 * DAY + k * HOUR + 2 * MIN)] for k in range(1, 6)},  # G1..G5: old
    }
    stats = prepare("diginetica", [write_diginetica(d / "views.csv", raw)], d / "out", tsplit=tsplit, test_days=1)
    return d / "out", raw, stats


def test_test_set_is_the_sessions_that_start_after_the_boundary(split_out):
    out, raw, _ = split_out
    # D1..D5 and H (starting exactly at b1); z, never seen in training, is kept
    assert sessions_of(read(out, "test.tsv")) == {s: raw[s] for s in (4, 11, 12, 13, 14, 15)}


def test_train_full_cuts_straddling_sessions(split_out):
    out, raw, stats = split_out
    # B loses its event after b1; C and I are left with one event and dropped; E, F, G whole
    expected = {1: raw[1], 2: raw[2][:2], 6: raw[6], 7: raw[7], **{s: raw[s] for s in range(21, 26)}}
    assert sessions_of(read(out, "train_full.tsv")) == expected
    assert stats["tsplit"] == T0 + 60 * DAY and stats["tday"] == DAY


def test_validation_split_of_train_full(split_out):
    out, raw, stats = split_out
    # train_tr: train_full before b2, then length-1 sessions dropped (E -> [p] goes, F -> its first two)
    assert sessions_of(read(out, "train_tr.tsv")) == {7: raw[7][:2], **{s: raw[s] for s in range(21, 26)}}
    # train_valid: the train_full sessions starting at or after b2, as cut by train_full (B without r)
    assert sessions_of(read(out, "train_valid.tsv")) == {1: raw[1], 2: raw[2][:2]}
    written = json.loads((out / "stats.json").read_text())
    assert written["files"]["test.tsv"] == stats["files"]["test.tsv"] == {
        "events": 17, "sessions": 6, "items": 4, "time_min": T0 + 59 * DAY, "time_max": T0 + 59 * DAY + 5 * HOUR + 2 * MIN,
        "days": round((5 * HOUR + 2 * MIN) / DAY, 4)}


# ---------------------------------------------------------------- the RSC15 variant

def test_rsc15_variant(tmp_path):
    tmax = T0 + 40 * DAY
    spec = []  # (session, [(item, ms)])
    n = 0

    def add(items, start, step=MIN):
        nonlocal n
        n += 1
        spec.append((n, [(i, start + k * step) for k, i in enumerate(items)]))
        return n

    old = tmax - 10 * DAY
    s_rep = [add("ppq", old + k * HOUR) for k in range(5)]        # repeats kept: p p q
    s1 = add("zx", old + 6 * HOUR)                                  # z has 4 events -> S1 = [x] -> dropped
    for k in range(3):
        add("zq", old + (7 + k) * HOUR)                             # -> [q] -> dropped
    t_ids = [add("xw", old + (10 + k) * HOUR) for k in range(4)]    # x has 4 left, but one pass keeps it
    t_ids.append(add("wq", old + 14 * HOUR))                        # w: 5 events
    straddle = add("pq", tmax - DAY - HOUR, step=2 * HOUR)          # ends after tmax - 1 day: test, whole
    m_ids = [add("pyq", tmax - 5 * HOUR + k * MIN * 10) for k in range(4)]  # y only in test -> removed
    n_id = add("yp", tmax - HOUR)                                   # -> [p] -> dropped from test
    last = add("qp", tmax - MIN)                                    # the last event is at tmax
    rows = [(s, iso(t), i) for s, events in spec for i, t in events]
    (tmp_path / "clicks.dat").write_text("".join(f"{s},{t},{i},0\n" for s, t, i in rows))
    stats = prepare("rsc15", [tmp_path / "clicks.dat"], tmp_path / "out")
    sec = lambda events: [(i, t / 1000) for i, t in events]
    by_id = dict(spec)
    train = sessions_of(read(tmp_path / "out", "train_full.tsv"))
    assert train == {s: sec(by_id[s]) for s in s_rep + t_ids}
    assert s1 not in train
    test = sessions_of(read(tmp_path / "out", "test.tsv"))
    assert test == {straddle: sec(by_id[straddle]), **{s: sec(by_id[s][::2]) for s in m_ids}, last: sec(by_id[last])}
    assert n_id not in test
    assert stats["tsplit"] == tmax / 1000


def test_rsc15_time_keeps_milliseconds(tmp_path):
    # sessions 1-5 on April 7 are train, 6-10 on April 9 test
    rows = [(s, f"2014-04-0{7 if s <= 5 else 9}T10:5{k}:09.277Z", i) for s in range(1, 11) for k, i in enumerate("ab")]
    (tmp_path / "clicks.dat").write_text("".join(f"{s},{t},{i},0\n" for s, t, i in rows))
    prepare("rsc15", [tmp_path / "clicks.dat"], tmp_path / "out")
    text = (tmp_path / "out" / "train_full.tsv").read_text().splitlines()
    assert text[1] == "1\ta\t1396867809.277"  # 2014-04-07T10:50:09.277Z, read as UTC
    assert len(read(tmp_path / "out", "test.tsv")) == 10


@pytest.mark.skipif(not os.path.isdir(RSC15_100K), reason="shared rsc15_100k data not available")
def test_rsc15_validation_split_matches_the_published_files(tmp_path):
    # rsc15_100k's train_tr / train_valid are train_full split by session end at its own max time
    def load(name):
        return pd.read_csv(os.path.join(RSC15_100K, name), sep="\t", dtype={"ItemId": str})

    import polars as pl
    full = pl.from_pandas(load("train_full.tsv")).with_row_index("_row").lazy()
    with Workspace(str(tmp_path)) as ws:
        train, valid = (p.sort("SessionId", "Time", "_row").drop("_row").collect().to_pandas()
                        for p in split_by_end(full, 86400, ws))
    for got, name in ((train, "train_tr.tsv"), (valid, "train_valid.tsv")):
        expected = load(name).reset_index().sort_values(["SessionId", "Time", "index"], kind="stable")
        pd.testing.assert_frame_equal(got, expected.drop(columns="index").reset_index(drop=True), check_dtype=False)


# ---------------------------------------------------------------- diginetica sample vs brute force

def brute_force_sessions(path, test_days):
    """The common rules in plain pandas, straight from the reference notes."""
    d = pd.read_csv(path, sep=";", dtype={"item_id": str})
    d["row"] = range(len(d))
    midnight = (pd.to_datetime(d.eventdate) - pd.Timestamp("1970-01-01")) // pd.Timedelta(milliseconds=1)
    d["Time"] = midnight.groupby(d.session_id).transform("min") + d.timeframe
    d = d.rename(columns={"session_id": "SessionId", "item_id": "ItemId"})
    d = d.sort_values(["SessionId", "Time", "row"], kind="stable")
    repeat = (d.SessionId == d.SessionId.shift()) & (d.ItemId == d.ItemId.shift())
    d = d[~repeat]
    while True:
        n = len(d)
        d = d[d.SessionId.map(d.groupby("SessionId").size()) > 1]
        d = d[d.ItemId.map(d.groupby("ItemId").size()) >= 5]
        if len(d) == n:
            break
    tday = test_days * DAY
    tsplit = d.Time.max()
    start = d.groupby("SessionId").Time.min()

    def split(data, boundary):
        test = data[data.SessionId.map(start) >= boundary]
        train = data[data.Time < boundary]
        return train[train.SessionId.map(train.groupby("SessionId").size()) > 1], test

    train_full, test = split(d, tsplit - tday)
    train_tr, valid = split(train_full, tsplit - 2 * tday)
    cols = ["SessionId", "ItemId", "Time"]
    return {n: f[cols].reset_index(drop=True) for n, f in zip(FILES, (train_full, test, train_tr, valid))}


@pytest.mark.skipif(not os.path.exists(DIGINETICA_SAMPLE), reason="shared raw diginetica sample not available")
@pytest.mark.parametrize("bucket_rows", [None, 200])
def test_diginetica_sample_matches_brute_force(tmp_path, monkeypatch, bucket_rows):
    if bucket_rows:  # the order-dependent steps then run on buckets of sessions (~60 for the dedup)
        monkeypatch.setattr(workspace, "ROWS_PER_BUCKET", bucket_rows)
    stats = prepare("diginetica", [DIGINETICA_SAMPLE], tmp_path)
    expected = brute_force_sessions(DIGINETICA_SAMPLE, test_days=7)
    for name in FILES:
        got = read(tmp_path, name)
        pd.testing.assert_frame_equal(got, expected[name], check_dtype=False)
        e = expected[name]
        assert stats["files"][name] == {
            "events": len(e), "sessions": e.SessionId.nunique(), "items": e.ItemId.nunique(),
            "time_min": e.Time.min(), "time_max": e.Time.max(), "days": round((e.Time.max() - e.Time.min()) / DAY, 4)}
    assert stats["steps"]["raw rows"] == 12_391
    assert len(expected["test.tsv"]) > 0 and len(expected["train_valid.tsv"]) > 0  # the sample exercises every file


# ---------------------------------------------------------------- user histories

def test_k_core_repeats_until_stable(tmp_path):
    # min_uc = min_sc = 2. Round 1: u4 (1 interaction) goes. Round 2: i3 is left with 1 -> goes,
    # then u3 has 1 -> goes. Round 3: no change. One pass would have kept u3 with i2, i3.
    rows = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 2), (3, 3), (4, 3)]
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},4.0,{100 + k}\n" for k, (u, i) in enumerate(rows)))
    stats = prepare("movielens", [tmp_path / "ratings.csv"], tmp_path / "out", min_uc=2, min_sc=2)
    got = read(tmp_path / "out", "interactions.tsv")
    assert got.values.tolist() == [[1, "1", 1], [1, "2", 2], [2, "1", 1], [2, "2", 2]]
    assert stats["steps"]["k-core rounds"] == 3


def test_history_order_keeps_timestamp_ties_in_row_order(tmp_path):
    # user 10: item 50 and item 7 share t=100 and keep their row order (50 then 7, not 7 then 50);
    # item 30 at t=90 comes first. Ids are numbered by raw id: users 2 -> 1, 10 -> 2 (not "10" < "2");
    # items 7 -> 1, 30 -> 2, 50 -> 3.
    (tmp_path / "ratings.dat").write_text("10::50::4::100\n10::7::4::100\n10::30::4::90\n2::7::5::5\n")
    (tmp_path / "movies.dat").write_bytes("7::Seven (1995)::Crime\n30::Café (1999)::Drama\n50::Fifty (2000)::Comedy|Drama\n"
                                          .encode("latin-1"))
    prepare("movielens", [tmp_path / "ratings.dat", tmp_path / "movies.dat"], tmp_path / "out", min_uc=1, min_sc=1)
    got = read(tmp_path / "out", "interactions.tsv")
    assert got.values.tolist() == [[1, "1", 1], [2, "2", 1], [2, "3", 2], [2, "1", 3]]
    items = pd.read_csv(tmp_path / "out" / "items.tsv", sep="\t")
    assert items.values.tolist() == [[1, 7, "Seven (1995)", "Crime"], [2, 30, "Café (1999)", "Drama"],
                                     [3, 50, "Fifty (2000)", "Comedy|Drama"]]


def test_amazon_ratings_and_metadata(tmp_path):
    # headerless ratings; min_rating 3 drops (u3, B3, 1.0); B4 has no title and is dropped first;
    # the metadata mixes the 2014 Python-literal lines and JSON lines
    ratings = [("u1", "B1", 5, 10), ("u1", "B2", 4, 20), ("u1", "B4", 5, 15), ("u2", "B2", 3, 5), ("u2", "B1", 5, 5),
               ("u3", "B3", 1.0, 1), ("u3", "B1", 5, 2)]
    (tmp_path / "ratings_Beauty.csv").write_text("".join(f"{u},{i},{r},{t}\n" for u, i, r, t in ratings))
    (tmp_path / "meta_Beauty.json").write_text(
        "{'asin': 'B1', 'title': 'Soap\\tBar', 'price': 3.5}\n"
        '{"asin": "B2", "title": "Cream"}\n'
        "{'asin': 'B3', 'title': 'Brush'}\n"
        "{'asin': 'B4', 'categories': [['Beauty']]}\n")
    stats = prepare("amazon", [tmp_path / "ratings_Beauty.csv", tmp_path / "meta_Beauty.json"], tmp_path / "out",
                    min_rating=3, min_uc=1, min_sc=1)
    got = read(tmp_path / "out", "interactions.tsv")
    # u2's two events tie at t=5: row order B2, B1
    assert got.values.tolist() == [[1, "1", 1], [1, "2", 2], [2, "2", 1], [2, "1", 2], [3, "1", 1]]
    items = pd.read_csv(tmp_path / "out" / "items.tsv", sep="\t")
    assert items.values.tolist() == [[1, "B1", "Soap Bar"], [2, "B2", "Cream"]]
    assert stats["files"]["interactions.tsv"]["interactions"] == 5



@pytest.mark.parametrize("order", ["user,item", "item,user"])
def test_amazon_headerless_column_order_is_read_from_the_ids(tmp_path, order):
    # 2014 "ratings only" files are user,item,rating,time; the 2018 ones item,user,rating,time.
    ratings = [("A2SUAM1J3GNN3B", "B0000530HU", 5, 10), ("A2SUAM1J3GNN3B", "0205616461", 4, 20),
               ("A1QA985ULVCQOB", "B0000530HU", 5, 5), ("A1QA985ULVCQOB", "B00006L9LC", 3, 6)]
    rows = [(u, i, r, t) if order == "user,item" else (i, u, r, t) for u, i, r, t in ratings]
    (tmp_path / "ratings.csv").write_text("".join(f"{a},{b},{r},{t}\n" for a, b, r, t in rows))
    prepare("amazon", [tmp_path / "ratings.csv"], tmp_path / "out", min_uc=1, min_sc=1)
    got = read(tmp_path / "out", "interactions.tsv")
    assert got.UserId.nunique() == 2 and got.ItemId.nunique() == 3  # swapped, it would be 3 users, 2 items
    items = pd.read_csv(tmp_path / "out" / "items.tsv", sep="\t")
    assert set(items.asin) == {"B0000530HU", "0205616461", "B00006L9LC"}

def brute_force_history(inter, min_rating, min_uc, min_sc):
    d = pd.read_csv(inter, sep="\t")
    d.columns = [c.split(":")[0] for c in d.columns]
    d["row"] = range(len(d))
    d = d[d.rating >= min_rating]
    while True:
        n = len(d)
        d = d[d.item_id.map(d.item_id.value_counts()) >= min_sc]
        d = d[d.user_id.map(d.user_id.value_counts()) >= min_uc]
        if len(d) == n:
            break
    users = {u: k for k, u in enumerate(sorted(d.user_id.unique()), 1)}
    items = {i: k for k, i in enumerate(sorted(d.item_id.unique()), 1)}
    d = d.sort_values(["user_id", "timestamp", "row"], kind="stable")
    out = pd.DataFrame({"UserId": d.user_id.map(users), "ItemId": d.item_id.map(items)})
    out["Time"] = out.groupby("UserId").cumcount() + 1
    return out.sort_values(["UserId", "Time"]).reset_index(drop=True), items


@pytest.mark.skipif(not os.path.isdir(ML100K), reason="shared ml-100k data not available")
@pytest.mark.parametrize("min_rating,min_k,bucket_rows", [(0, 5, None), (4, 20, 5000)])
def test_ml100k_recbole_matches_brute_force(tmp_path, monkeypatch, min_rating, min_k, bucket_rows):
    if bucket_rows:  # histories then ordered one range of users at a time
        monkeypatch.setattr(workspace, "ROWS_PER_BUCKET", bucket_rows)
    inter, item = os.path.join(ML100K, "ml-100k.inter"), os.path.join(ML100K, "ml-100k.item")
    stats = prepare("recbole", [inter, item], tmp_path, min_rating=min_rating, min_uc=min_k, min_sc=min_k)
    expected, item_map = brute_force_history(inter, min_rating, min_k, min_k)
    got = pd.read_csv(tmp_path / "interactions.tsv", sep="\t")
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    items = pd.read_csv(tmp_path / "items.tsv", sep="\t")
    titles = pd.read_csv(item, sep="\t", quoting=3).set_index("item_id:token")["movie_title:token_seq"]
    assert items.ItemId.tolist() == list(range(1, len(item_map) + 1))
    assert items.item_id.tolist() == list(item_map)
    assert items.title.tolist() == [" ".join(titles[i].split()) for i in item_map]
    assert stats["files"]["interactions.tsv"]["users"] == expected.UserId.nunique()
    if min_k == 20:
        assert stats["steps"]["k-core rounds"] > 2  # a real fixed point, not one pass


# ---------------------------------------------------------------- errors and the command line

def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'diginetica'"):
        prepare("digenetica", ["x.csv"], tmp_path)
    with pytest.raises(ConfigError, match="no option 'min_uc'"):
        prepare("diginetica", [DIGINETICA_SAMPLE], tmp_path, min_uc=5)
    with pytest.raises(ConfigError, match="no option 'tsplit'"):
        prepare("rsc15", [DIGINETICA_SAMPLE], tmp_path, tsplit=5)
    bad = tmp_path / "v.csv"
    bad.write_text("session_id;user_id;itemid;timeframe;eventdate\n1;NA;5;10;2016-01-01\n")
    with pytest.raises(DataError, match=r"missing column 'itemId' or 'item_id'.*'itemid'"):
        prepare("diginetica", [bad], tmp_path / "o")
    bad.write_text("session_id;user_id;item_id;timeframe;eventdate\n1;NA;5;10;2016-01-01\n1;NA;6;20;2016-01-32\n")
    with pytest.raises(DataError, match=r"column 'eventdate' in data row 2 holds '2016-01-32', which is not a date"):
        prepare("diginetica", [bad], tmp_path / "o")
    assert not any(n.startswith(".prepare-") for n in os.listdir(tmp_path / "o"))  # no stages left behind


@pytest.mark.skipif(not os.path.exists(DIGINETICA_SAMPLE), reason="shared raw diginetica sample not available")
def test_cli_prepare(tmp_path, capsys):
    assert main(["prepare", "diginetica", "--raw", DIGINETICA_SAMPLE, "--out", str(tmp_path), "--test-days", "7"]) == 0
    out = capsys.readouterr().out
    assert "train_valid.tsv" in out and "filter rounds" in out
    assert sorted(os.listdir(tmp_path)) == sorted([*FILES, "stats.json"])
    assert main(["prepare", "movielen", "--raw", DIGINETICA_SAMPLE, "--out", str(tmp_path)]) == 2
    assert "Did you mean 'movielens'" in capsys.readouterr().err
