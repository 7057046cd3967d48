"""The trimmer hands freed memory back only once RSS has grown past its slack, then re-bases."""
from nextitem.training import kernels


def test_trims_only_past_the_slack(monkeypatch):
    # 1.0 sets the base; 1.4 is within it; 2.1 trims (then reads 1.1 as the new base); 1.5 is within;
    # 0.8 lowers the base; 1.9 is past 0.8 + 1.0 and trims again (then reads 1.0)
    readings = iter([1.0, 1.4, 2.1, 1.1, 1.5, 0.8, 1.9, 1.0])
    monkeypatch.setattr(kernels, "_rss_gb", lambda: next(readings))
    trimmer = kernels.FreedMemoryTrimmer(slack_gb=1.0)
    calls = []
    trimmer._trim = calls.append
    assert [trimmer() for _ in range(5)] == [False, False, True, False, False]
    assert trimmer.base == 0.8 and calls == [0]
    assert trimmer() is True and trimmer.base == 1.0 and calls == [0, 0]


def test_real_trim_runs_on_this_platform():
    kernels.FreedMemoryTrimmer(slack_gb=0.0)()  # glibc: a real malloc_trim; elsewhere a no-op
