"""A sweep's study on the report page: the trials table (sweep.study.rows), the pruning summary, and Optuna's own
matplotlib plots: optimisation history, parameter importances and parallel coordinates."""
from __future__ import annotations

import optuna

from src.insight.comparison import esc, png_uri
from src.run.figures import pyplot
from src.sweep import study as studies


def figure_of(plot, study: optuna.Study):
    """Optuna's plot as a figure, or the reason it cannot be drawn (too few finished trials)."""
    try:
        axes = plot(study)
    except (ValueError, RuntimeError) as e:
        return None, str(e)
    axes = axes.flat[0] if hasattr(axes, "flat") else axes
    fig = axes.figure
    fig.set_size_inches(9, 4.5)
    fig.tight_layout()
    return fig, ""


def study_section(study: optuna.Study) -> str:
    pyplot()  # the Agg backend, before Optuna's plots import pyplot
    import optuna.visualization.matplotlib as optuna_plots

    table = studies.rows(study)
    head = "<tr><th>trial</th><th>state</th><th>objective</th><th>minutes</th><th>predicted</th><th>epochs</th><th>params</th>" \
           "<th>run</th></tr>"
    body = []
    for r in table:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items())
        retry = f" (retry of {r['retry_of']})" if r["retry_of"] is not None else ""
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        took, predicted = ("" if r[k] is None else f"{r[k]:.1f}" for k in ("minutes", "predicted"))
        body.append(f"<tr><td>{r['number']}{retry}</td><td>{esc(r['state'])}</td><td>{value}</td><td>{took}</td>"
                    f"<td>{predicted}</td><td>{r['epochs']}</td><td>{esc(params)}</td><td>{esc(r['run'])}</td></tr>")
    parts = [f"<h2>study {esc(study.study_name)}</h2>",
             f"<p>{len(table)} trial(s), best first; {esc(studies.pruning_summary(table))}.</p>",
             f"<table>{head}{''.join(body)}</table>"]
    for title, plot in (("optimisation history", optuna_plots.plot_optimization_history),
                        ("parameter importances", optuna_plots.plot_param_importances),
                        ("parallel coordinates", optuna_plots.plot_parallel_coordinate)):
        fig, why = figure_of(plot, study)
        parts.append(f"<h3>{title}</h3>" + (f'<img src="{png_uri(fig)}">' if fig is not None else
                                            f"<p>not drawn: {esc(why)}</p>"))
    return "\n".join(parts)
