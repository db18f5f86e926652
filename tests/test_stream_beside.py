"""The call stage and the archive run on a second thread beside the SIM stage: their Spark jobs
belong to the micro-batch's job group, so stopping the query cancels them with the batch's own."""

from __future__ import annotations

import json

import pytest
from test_stream_dead_letter import recording_job

from streaming.settings import StreamSettings
from streaming.stages import Stages

pytestmark = [pytest.mark.spark]


def test_work_beside_the_sim_stage_runs_in_the_micro_batchs_job_group(spark, tmp_path) -> None:
    job, _ = recording_job(
        spark, "127.0.0.1:9", tmp_path, cdr_topic="unused", dead_letter_topic="unused", stream=StreamSettings()
    )
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.json").write_text(json.dumps({"n": 1}) + "\n")
    seen: list[tuple[str | None, str | None, str]] = []

    def batch(frame, batch_id: int) -> None:
        def group() -> str | None:
            return spark.sparkContext.getLocalProperty("spark.jobGroup.id")

        stages = Stages()
        beside = job._run_beside(stages, "probe", group).result()
        seen.append((group(), beside, ",".join(stages.laps)))

    query = (
        spark.readStream.schema("n long").json(str(source))
        .writeStream.foreachBatch(batch)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(120)
    assert seen, "the query ran no micro-batch"
    main, beside, laps = seen[0]
    assert main == str(query.runId)
    assert beside == main
    assert laps == "probe"
