"""What a user checks in the terminal after a command: prepare's counts, the data card's lines, each split's
models with CIs and the verdict (pure: printed from the flows' summaries)."""

from __future__ import annotations


def print_prepare_summary(prepared) -> None:
    """The counts a user checks after prepare (``flows.results.Prepared``): accounting per file, table sizes,
    split sizes."""
    print(f"\nprepared {prepared.dataset} in {prepared.database} (run {prepared.run_id})")
    print(
        f"\n{'input':<14}{'raw':>10}{'kept':>10}{'quarantined':>13}{'exact dup':>11}{'superseded':>12}{'text dup':>10}"
    )
    for role, a in prepared.accounting.items():
        print(
            f"{role:<14}{a['raw']:>10,}{a['kept']:>10,}{a['quarantined']:>13,}"
            f"{a['exact_duplicates']:>11,}{a['superseded']:>12,}{a.get('text_duplicates', 0):>10,}"
        )
    t = prepared.tables
    print(
        f"\n{t['interactions']:,} ratings from {t['users_with_ratings']:,} users on "
        f"{t['items_with_ratings']:,} items; items table {t['items']:,}, users table {t['users']:,}, "
        f"tags {t['tags']:,}"
    )
    print(f"\n{'split':<22}{'train':>10}{'validation':>12}{'test':>10}")
    for split_id, sizes in prepared.splits.items():
        print(f"{split_id:<22}{sizes['train']:>10,}{sizes['validation']:>12,}{sizes['test']:>10,}")
    if prepared.data_docs:
        print(f"\nGX Data Docs: {prepared.data_docs}")
    if prepared.data_card:
        print_data_card(prepared.data_card)


def print_data_card(card: dict) -> None:
    """The data card's few lines: what the data is, and its warnings as one paragraph."""
    from data_checks.card import card_lines, warning_paragraph

    print("\ndata card")
    for line in card_lines(card):
        print(f"  {line}")
    paragraph = warning_paragraph(card)
    print(f"\n{paragraph}" if paragraph else "  no threat to validity above the thresholds")


RATING_COLUMNS = ("rmse", "mae")
RANKING_COLUMNS = ("ndcg", "recall", "map", "mrr", "auc", "diversity", "novelty")


def _cell(rows, metric: str) -> str:
    if metric not in rows.index:
        return "".rjust(24)
    value, low, high = rows.loc[metric, ["value", "ci_low", "ci_high"]]
    return f"{value:.4f} [{low:.3f},{high:.3f}]".rjust(24)


def print_evaluation(trained) -> None:
    """A train run's result (``flows.results.Trained``): each split's models x headline metrics, value [95% CI],
    segment 'all' (a k-fold protocol's folds in one line: they are judged pooled), then the verdict: the bottom
    line and one sentence per contender and task."""
    from models.evaluation import judged_unit

    folds: dict[str, list[str]] = {}
    for split_id, split in trained.splits.items():
        if judged_unit(split_id) != split_id:
            folds.setdefault(judged_unit(split_id), []).append(split_id)
            continue
        results = split.results
        overall = results[results["segment"] == "all"]
        print(f"\n{split_id} ({split.protocol}), test set; 95% bootstrap CIs over users")
        for title, metrics in (("rating", RATING_COLUMNS), ("ranking", RANKING_COLUMNS)):
            table = overall[overall["metric"].isin(metrics)]
            if table.empty:
                continue
            k = int(table["k"].max())
            shown = [m for m in metrics if m in set(table["metric"])]
            labels = [f"{m}@{k}" if title == "ranking" and m != "auc" else m for m in shown]  # AUC has no cut-off
            print("  " + "model".ljust(16) + "".join(label.rjust(24) for label in labels))
            for model, rows in table.groupby("model", sort=False):
                by_metric = rows.set_index("metric")
                print(f"  {model.ljust(16)}" + "".join(_cell(by_metric, m) for m in shown))
    for unit, ids in folds.items():
        planned = (trained.planned_folds or {}).get(unit, 0)
        if len(ids) >= planned:
            tested = "every rating tested once"
        else:  # a run trained only some of the unit's folds (--splits)
            tested = (
                f"only {len(ids)} of its {planned} folds trained, so about {len(ids)}/{planned} of the ratings are "
                f"tested, not every one (train every fold for that)"
            )
        print(f"\n{unit}: {len(ids)} folds ({', '.join(ids)}), judged pooled: {tested} (see the report)")
    differences = trained.differences
    if differences is not None and not differences.empty:
        from reports.conclusions import bottom_line, task_sentences

        print("\nverdict (pre-registered primary comparisons)")
        for line in [bottom_line(differences), *task_sentences(differences)]:
            print(f"  {line}")
    print(
        f"\nper-user values, metrics and paired tests are in {trained.database} "
        "(eval_per_user, eval_results, eval_tests)"
    )


def print_search(out: dict) -> None:
    """A LightFM search's trials and how to train with the best."""
    import json

    print(f"\n{'trial':>5}  {'validation NDCG':>15}  {'epochs':>6}  {'seconds':>8}  config")
    for t in out["trials"]:
        print(
            f"{t['trial']:>5}  {t['validation_ndcg']:>15.4f}  {t['epochs']:>6}  {t['fit_seconds']:>8.1f}  "
            f"{json.dumps(t['config'])}"
        )
    best = out["best"]
    print(
        f"\nbest: trial {best['trial']} (validation NDCG {best['validation_ndcg']:.4f}); train with it:\n"
        f"  python -m flows.full --lightfm-params '{json.dumps(best['config'])}'"
    )


def print_recommendations(result: dict) -> None:
    """The champion's recommendations per user: items, scores, what drove each, the similar items seen."""
    print(f"model {result['model_version']}")
    for rec in result["recommendations"]:
        print(f"\n{rec['user_id']} ({rec['strategy']})")
        for n, (item, score) in enumerate(zip(rec["items"], rec["scores"], strict=True)):
            why = rec["explanations"][n] if rec["explanations"] else {}
            drivers = ", ".join(f"{name} {value:+.2f}" for name, value in why.get("drivers", {}).items())
            similar = "; like " + ", ".join(s["item_id"] for s in why["similar_to"]) if why.get("similar_to") else ""
            print(f"  {n + 1:>3}. {item:<14} {score:8.3f}   {drivers}{similar}")


def print_erasure(out: dict) -> None:
    """What an erasure removed, one line per place."""
    print(f"erasure {out['erasure_id']}:")
    for table, n in out["tables"].items():
        print(f"  {table}: {n} row(s)")
    print(f"  serving log: {out['serving_log']} request(s)")
    if out["folders"]:
        print(f"  removed (recomputed on the next run): {', '.join(out['folders'])}")
    marked = ", ".join(out["bundles_marked"]) or "none"
    print(f"  published bundles trained on the user, marked: {marked} (retrain and publish to serve without them)")


def print_report(written) -> None:
    """Where a run's report was written (``flows.results.Written``)."""
    print(f"\nreport of run {written.run_id}:\n  {written.html}\n  {written.markdown}")


def print_experiment(experiment) -> None:
    """The full experiment (``flows.results.Experiment``): prepare's counts, the evaluation and verdict, where
    the report is."""
    print_prepare_summary(experiment.prepare)
    print_evaluation(experiment.train)
    print(f"\nreport: {experiment.report.html}\n        {experiment.report.markdown}")


def print_study(summary: dict) -> None:
    """Each dataset's outcome and where the study report is."""
    print(f"\nstudy {summary['study_id']}:")
    for name, outcome in summary["datasets"].items():
        state = outcome["status"] if outcome["status"] == "completed" else f"failed: {outcome['error']}"
        print(f"  {name}: {state}")
    print(f"report: {summary['html']}\n        {summary['markdown']}")


def print_prune(out: dict) -> None:
    """How many serving-log requests the retention removed."""
    print(
        f"\n{out['workspace']}: {out['removed']} serving-log requests older than {out['retention_days']} days removed"
    )
