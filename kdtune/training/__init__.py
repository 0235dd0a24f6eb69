"""One trial's path, without Ray and without MLflow: what a student or teacher trial computes.

- `loop`: the training/evaluation loop (`train`, `evaluate`, `predict`, `TrainSettings`);
- `losses`: the KD loss terms (`Distiller`'s attention, hidden, embedding and prediction losses);
- `checkpoint`: resumable training state on disk (students and teachers), written atomically;
- `runtime`: device, precision (bf16 autocast, TF32) and torch's random state;
- `inputs`: a trial's data (splits, partitions, fraction, loaders);
- `trial`: one student trial end to end (`build`, `run`);
- `teacher_store`: teacher fine-tuning and the content-addressed teacher store;
- `teacher_cache`: the teacher's KD outputs per training row, computed once, read by KD trials.

Kept empty on purpose: import the submodule you need, so that importing one never pulls in the
others (`kdtune.sweep.trainable` glues these to Ray Tune and MLflow).
"""
