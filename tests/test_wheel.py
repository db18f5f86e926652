"""The package as a user installs it: a wheel built from a copy of the sources, installed into a
fresh virtualenv outside the repository, runs ``simguard doctor`` and ``simguard ingest`` from
another folder with only the files the wheel ships (configs, numbering plan, mappings, Alembic
migrations), found through importlib.resources.

The wheel's third-party dependencies are not downloaded again: the new environment sees this
environment's site-packages as a plain path entry (no ``.pth`` processing, so this checkout's
editable install does not come along), and ``pip check`` proves the wheel's declared
requirements are met there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from pipeline.config import PROJECT_ROOT

pytestmark = pytest.mark.slow

IGNORE = shutil.ignore_patterns(".git", ".venv", ".simguard", "build", "dist", "*.egg-info", "__pycache__",
                                ".pytest_cache", ".ruff_cache", "tests", "bench")

DJEZZY_ROWS = """\
,Call_Type,Charging_Tm,Call_Duration,Telesrvc,LOCATION,A_Num,B_Num,cell_id,IMEI,TAC,DESTINATION_CAT,MU_HANDSET_DUAL_SIM,MU_Device_type_Segment,MU_HANDSET_MOBILE_TECH,is_fraud
449,0,2024-04-22 13:54:51,17.969364,11,29751,8800,167006,7585772.0,5391.0,77.0,ON-NET,Y,Smartphone,4G,1
18880,7,2024-04-23 05:48:11,2.0,21,29751,8800,97128,7585772.0,5391.0,77.0,INTERNATIONAL,Y,Smartphone,4G,1
450,1,2024-04-22 14:00:02,61.5,11,29751,8800,200001,7585772.0,5391.0,77.0,OFF-NET,Y,Smartphone,4G,1
"""


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh virtualenv with the wheel installed."""
    src = tmp_path_factory.mktemp("src") / "simguard"
    shutil.copytree(PROJECT_ROOT, src, ignore=IGNORE)
    dist = tmp_path_factory.mktemp("dist")
    built = run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(src)])
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("simguard-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # every file the code finds beside itself: configs, mappings, migrations, the console's pages
    data = [f"simguard_configs/{p.relative_to(src / 'configs')}" for p in (src / "configs").rglob("*.yaml")]
    data += [str(p.relative_to(src)) for folder in ("streaming/blocklist/migrations", "console/templates",
                                                     "console/static")
             for p in (src / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert "simguard_configs/mappings/djezzy_simbox.yaml" in data and "console/templates/base.html" in data
    missing = sorted(set(data) - names)
    assert not missing, f"not in the wheel: {missing}"
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    # a PostgreSQL URL needs a driver: `pip install simguard[postgres]`
    assert "Provides-Extra: postgres" in text
    assert re.search(r'Requires-Dist: psycopg\[binary\].*; extra == "postgres"', text), text

    venv = tmp_path_factory.mktemp("venv") / "env"
    assert run([sys.executable, "-m", "venv", "--without-pip", str(venv)]).returncode == 0
    purelib = Path(run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
                   .stdout.strip())
    (purelib / "borrowed-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    done = run([*pip, "install", "--no-deps", "--no-index", "-q", str(wheel)])
    assert done.returncode == 0, done.stderr[-3000:]
    checked = run([*pip, "check"])
    assert checked.returncode == 0, checked.stdout[-3000:]
    return venv / "bin"


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIMGUARD_", "PYTHON"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return env


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    code = ("import features.resources as r, pipeline.config as c, streaming.blocklist.migrate as m; "
            "print(r.config_file('default.yaml')); print(c.__file__); print(m.MIGRATIONS)")
    shown = run([str(installed / "python"), "-c", code], cwd=tmp_path, env=clean_env())
    assert shown.returncode == 0, shown.stderr
    for line in shown.stdout.splitlines():
        assert str(installed.parent) in line and str(PROJECT_ROOT) not in line, shown.stdout


def test_doctor_and_ingest_run_from_another_folder(installed: Path, tmp_path: Path) -> None:
    env = clean_env()
    # the JVM jars are not Python package data: doctor is told where `make setup` put them
    env["SIMGUARD_JARS_DIR"] = str(PROJECT_ROOT / ".simguard" / "jars")
    doctor = run([str(installed / "simguard"), "doctor"], cwd=tmp_path, env=env)
    lines = doctor.stdout.splitlines()
    assert "Traceback" not in doctor.stderr and len(lines) == 6, doctor.stdout + doctor.stderr
    for component in ("java", "spark", "jars", "mlflow", "database"):
        assert any(line.startswith("ok") and f" {component} " in line for line in lines), doctor.stdout
    # the default config put the state under the working folder, not the package
    assert f"sqlite:///{tmp_path.resolve() / '.simguard' / 'simguard.db'}" in doctor.stdout

    export = tmp_path / "export.csv"
    export.write_text(DJEZZY_ROWS)
    ingest = run([str(installed / "simguard"), "ingest", "--mapping", "djezzy_simbox", "--input", str(export),
                  "--out", "out"], cwd=tmp_path, env=env)
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert list((tmp_path / "out" / "cdrs").rglob("*.parquet")), ingest.stdout
    import json

    summary = json.loads((tmp_path / "out" / "ingest_summary.json").read_text())
    assert summary["rows_in"] == 3 and summary["valid"] == 3, summary
