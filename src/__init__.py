"""maskcls: face-mask-status classification, grouped by job. Imports run downward only (docs/architecture.md):

    errors, files, labels, seeds,     the shared vocabulary: the one error base, safe file reading, the classes,
    metrics, predictions, decision,   seeds, scores, what a prediction says (Predictions), decisions, people
    people
    config/                           the settings: schema, parsing, policy
    run/                              the run folder and what is written into it
    data/                             images, tables, datasets, transforms, cache, loaders
    model/                            the network and its Output, backbones, age heads and losses
    engine/                           builders, the trainer, the step, the forward pass, evaluation
    predict/                          inference and pseudo labels
    sweep/                            Optuna sweeps: the sweep file, the study storage, the worker
    insight/                          OOF views, galleries, Grad-CAM, label issues, the run comparison, the page
"""
