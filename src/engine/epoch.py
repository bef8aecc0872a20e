"""One epoch of a fold: the pass over its training batches (train_one_epoch), the pass over its whole validation set
(validate), and what follows them (finish_epoch: early stopping, the scheduler, the fold's writes, a sweep's hook).
Everything comes from the fold's state (src/engine/state.py); nothing here reads a config."""
from __future__ import annotations

import math

import torch
from tqdm import tqdm

from src import seeds
from src.data.loaders import forever, set_epoch
from src.engine import dist as dist_mod
from src.engine.forward import predict_loader, predictions
from src.engine.state import Fold, RunInputs
from src.errors import NonFinite, stop_if_signalled
from src.labels import target_label
from src.metrics import evaluate, macro_f1
from src.run.checkpoint import rng_state
from src.run.logging import log
from src.run.saver import Validated

VAL_METRICS = ("val_loss", "val_acc", "val_f1", "val_f1_mask", "val_f1_gender", "val_f1_age")  # validate's
BAR_EVERY = 10  # steps between the progress bar's loss and running macro-F1 (and the check for a non-finite loss)


def check_finite(loss_sum: torch.Tensor, k: int, epoch: int, step: int):
    if not torch.isfinite(loss_sum):
        raise NonFinite(f"fold {k} epoch {epoch}: the training loss became {loss_sum.item()} by step {step}; "
                        f"the fold stopped and its earlier checkpoints are intact. "
                        f"Try a lower --lr, --grad_clip 1, or --amp none.")


def train_one_epoch(ins: RunInputs, fold: Fold, epoch: int) -> dict:
    """One pass over the fold's training loader (its sampler and augmentation seeded by the epoch, the unlabelled
    stream beside it, the teachers' probabilities of both with --teacher), then the buffers made the same on every
    rank; losses and F1 over the whole epoch. Before each step the fold's writer thread is asked for an error, so a
    failed write stops the run as soon as it fails."""
    data = fold.data
    data.sampler.set_epoch(epoch)
    set_epoch(data.train_ds, epoch)
    # the unlabelled stream of each epoch starts afresh from the epoch number, so a resume replays it
    unl_iter = forever(*data.unlabeled, seeds.unlabeled_epoch(epoch)) if data.unlabeled is not None else None
    o, step, show = fold.objects, fold.objects.step, ins.dist.main
    batch_scheduler = o.scheduler if fold.sched_when == "batch" else None
    step.model.train()
    sums = torch.zeros(3, device=step.device)  # total, supervised, consistency or KL
    preds, targets = [], []
    n = 0
    # closed however the epoch ends, so that an error's line never lands on the bar's
    with tqdm(data.train_loader, desc=f"fold {fold.k} epoch {epoch}", disable=not show, mininterval=1,
              leave=False) as bar:
        for i, (x, y, rows) in enumerate(bar):
            stop_if_signalled()
            fold.saver.check()
            unl = next(unl_iter) if unl_iter is not None else None
            loss, sup, cons, logits = step(x, y, unl[0] if unl is not None else None,
                                           teacher_probs(data.soft, rows, unl))
            if batch_scheduler is not None:
                batch_scheduler.step()
            sums += torch.stack([loss, sup, cons]).float() * len(x)
            n += len(x)
            preds.append(logits.argmax(1).cpu())
            targets.append(target_label(y))
            if i % BAR_EVERY == 0 or i == len(data.train_loader) - 1:
                check_finite(sums[0], fold.k, epoch, i)
                if show:  # the running F1 costs a pass over the epoch's predictions: only for a bar someone sees
                    bar.set_postfix(loss=f"{sums[0].item() / n:.4f}",
                                    lr=f"{step.optimizer.param_groups[0]['lr']:.2e}",
                                    f1=f"{macro_f1(torch.cat(targets), torch.cat(preds)):.3f}")
    check_finite(sums[0], fold.k, epoch, len(data.train_loader))
    dist_mod.sync_buffers(ins.dist, o.model)
    if o.ema is not None:
        dist_mod.sync_buffers(ins.dist, o.ema.module)
    total, sup, cons = (sums / max(n, 1)).tolist()
    out = dict(train_loss=total, train_f1=macro_f1(torch.cat(targets), torch.cat(preds)) if n else 0.0)
    if data.soft is not None:
        out.update(train_sup_loss=sup, train_kd_loss=cons)
    elif unl_iter is not None:
        out.update(train_sup_loss=sup, train_uda_loss=cons)
    return out


def teacher_probs(soft: tuple | None, rows: torch.Tensor, unl: list | None) -> torch.Tensor | None:
    """The teachers' probabilities of a batch's training photos (dataset `rows`) and of its unlabelled ones."""
    if soft is None:
        return None
    labelled = soft[0][rows]
    return labelled if unl is None else torch.cat([labelled, soft[1][unl[2]]])


def validate(ins: RunInputs, fold: Fold, epoch: int) -> Validated:
    """The fold's validation rows through the weights that validate (every rank's shard, gathered): their
    Predictions and the val_* metrics over the whole set. Non-finite results stop the fold before
    anything of the epoch is saved."""
    dist = ins.dist
    idx, out = predict_loader([fold.eval_model], fold.data.val_loader, dist.device, tta="none", amp=fold.plan.amp)
    idx, out = dist_mod.gather_rows(dist, idx, out.map(lambda t: t[0]))  # one model, one view
    y = fold.data.val_labels[idx]
    with torch.no_grad():
        val_loss = float(fold.criterion(out.map(lambda t: t.to(dist.device)), y.to(dist.device)))
    pred = predictions(out.map(lambda t: t[None]))
    finite = pred.finite()
    if not (math.isfinite(val_loss) and finite.all()):
        raise NonFinite(f"fold {fold.k} epoch {epoch}: the validation loss is {val_loss} and "
                        f"{int((~finite).sum())} of {len(finite)} images have non-finite "
                        f"probabilities; the fold stopped unfinished, nothing of this epoch was saved. "
                        f"Try a lower --lr, --grad_clip 1, or --amp none.")
    m = evaluate(y.numpy(), pred.probs)
    rows = fold.data.val_rows[idx.numpy()]
    table = ins.table
    return Validated(paths=table["path"].to_numpy()[rows], labels=table["label"].to_numpy()[rows], predictions=pred,
                     metrics=dict(zip(VAL_METRICS, (val_loss, m["acc"], m["f1"], m["f1_mask"], m["f1_gender"],
                                                    m["f1_age"]))),
                     ages=table["age"].to_numpy()[rows])


def validation_due(fold: Fold, epoch: int) -> bool:
    """Every val_every epochs and on the last; also when the stopper is already due (patience lowered on resume),
    since the fold may end here. Never for a fold without validation rows."""
    plan = fold.plan
    if not len(fold.data.val_rows):  # --fold full: nothing to validate
        return False
    return (epoch + 1) % plan.val_every == 0 or epoch == plan.epochs - 1 or fold.objects.stopper.should_stop


def finish_epoch(ins: RunInputs, fold: Fold, epoch: int, stats: dict, validated: Validated | None) -> bool:
    """After an epoch's passes (`stats`: its training figures and time): early stopping, the scheduler, the fold's
    writes (rank 0), then the sweep's hook; whether the fold stops."""
    dist, o = ins.dist, fold.objects
    metrics = validated.metrics if validated is not None else {}
    if validated is not None:
        o.stopper.step(metrics[fold.plan.monitor])
    lr = o.optimizer.param_groups[0]["lr"]
    if fold.sched_when == "epoch":
        o.scheduler.step()
    elif fold.sched_when == "val_loss" and validated is not None:
        o.scheduler.step(metrics["val_loss"])
    stop = dist_mod.broadcast(dist, o.stopper.should_stop)
    rngs = dist_mod.gather_objects(dist, rng_state())  # every rank's, so a DDP resume is exact too
    last = stop or epoch == fold.plan.epochs - 1
    time_s = stats.pop("time_s")
    values = dict(lr=lr, **stats, **(dict.fromkeys(VAL_METRICS, math.nan) | metrics), time_s=time_s)
    fold.saver.save_epoch(epoch, values, validated, last=last, rngs=rngs)
    if dist.main and ins.after_epoch is not None:
        ins.after_epoch(fold.k, epoch, metrics, last)
    dist_mod.barrier(dist)
    if stop:
        log.info("fold %d: early stop after epoch %d (%s did not improve for %d epochs)", fold.k, epoch,
                 fold.plan.monitor, o.stopper.wait)
    return stop
