"""The simulated relevance-feedback round of `pixseek eval --feedback-round K` (issue 21)."""

from __future__ import annotations

import json

from pixseek.evaluation.feedback import feedback_round, summarize

from tests.conftest import COCO


def test_round_marks_the_top_k_and_scores_both_views():
    ranking = [(f"p{i}", 1.0 - i / 10) for i in range(8)]
    relevant = {"p1", "p3", "p6"}
    seen: list[tuple[list[str], list[str]]] = []

    def rerun(good, bad):  # an ideal re-ranker: marked good first, then p6, then the rest
        seen.append((good, bad))
        order = good + ["p6"] + [p for p, _ in ranking if p not in good and p != "p6"]
        return [(p, 1.0 - i / 10) for i, p in enumerate(order)]

    result = feedback_round(ranking, relevant, [1, 5], 3, 4, rerun)
    assert seen == [(["p1", "p3"], ["p0", "p2"])]
    assert (result.marked_good, result.marked_bad) == (2, 2)
    assert result.after["AP"] == 1.0 and result.before["AP"] < 1.0
    # Residual: p1, p3 (judged) leave both lists; only p6 is left to find.
    assert result.residual_after["R@1"] == 1.0 and result.residual_before["R@1"] == 0.0
    summary = summarize({"text": [result]}, [1, 5])
    full = summary["text"]["metrics"]["full AP"]
    assert (
        full["queries"] == 1 and full["delta"]["mean"] == result.after["AP"] - result.before["AP"]
    )


def test_eval_feedback_round_end_to_end(cli, tmp_path):
    code, _, err = cli("ingest", COCO, "--labels", COCO / "labels.jsonl", "-c", "coco", "--json")
    assert code == 0, err
    queries = tmp_path / "queries.jsonl"
    cli("eval-queries", "labels", COCO / "labels.jsonl", "--out", queries)
    out = tmp_path / "report"
    args = ["eval", "-c", "coco", "--queries", queries, "--strategies", "text,dense"]
    code, stdout, err = cli(*args, "--k", "10", "--out", out, "--feedback-round", "10")
    assert code == 0, err
    assert "Simulated feedback round" in stdout and "| text | full AP |" in stdout
    feedback = json.loads((out / "metrics.json").read_text())["feedback"]
    assert set(feedback) == {"text", "dense"}
    text = feedback["text"]
    assert text["marked_good"] > 0 and text["marked_bad"] > 0
    # Even with random weights the mechanism shows: relevant marked hits rise to the top.
    full = text["metrics"]["full AP"]
    assert full["after"] > full["before"] and full["delta"]["ci_low"] > 0
    assert text["metrics"]["residual AP"]["queries"] > 0
