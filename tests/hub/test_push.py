"""`distil push`: exactly the files of the chosen folder that a Hub repository is made of go,
through huggingface_hub's own API to a fake Hub (only its HTTP transport is replaced,
tests/hub/fake_hub.py); never a dotfile, a link to a file outside the run, a file holding a
secret's value, a failed variant; the token comes from $HF_TOKEN only and is never printed."""

import pytest
import yaml
from huggingface_hub import DatasetCard, ModelCard
from huggingface_hub.utils._http import default_client_factory, set_client_factory

from tests.cli_helpers import assert_one_error_line, run_cli
from tests.hub.fake_hub import FakeHub

TOKEN = "hf_testtoken1234567890"


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    fake.install()
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    yield fake
    set_client_factory(default_client_factory)


@pytest.fixture
def run(tmp_path):
    """A run folder as distil leaves it, with what a user may have put beside the outputs."""
    run = tmp_path / "run"
    (run / "student").mkdir(parents=True)
    (run / "recipe.yaml").write_text(
        yaml.safe_dump(
            {"name": "r", "teacher": {"model": "demo"}, "student": {"model": "smollm2-135m-instruct"}}
        )
    )
    for name, text in {
        "config.json": "{}",
        "model.safetensors": "weights",
        "tokenizer.json": "{}",
        "chat_template.jinja": "{{ x }}",
        "README.md": "---\nlibrary_name: transformers\n---\n# card\n",
        ".notes": "private",
        "train.log": "log",
    }.items():
        (run / "student" / name).write_text(text)
    secret_file = tmp_path / "users-file.txt"
    secret_file.write_text("not part of the run")
    (run / "student" / "linked.json").symlink_to(secret_file)
    export = run / "export"
    for name in (
        "hf-float16/config.json",
        "hf-float16/model.safetensors",
        "hf-float16/README.md",
        "onnx/model.onnx",
        "gguf-f16/Modelfile",
        "gguf-f16/model-f16.gguf",
        "failed/onnx-int8/model.onnx",
        "parity.json",
        "README.md",
    ):
        (export / name).parent.mkdir(parents=True, exist_ok=True)
        (export / name).write_text(name)
    data = run / "data"
    data.mkdir()
    for name in ("train.parquet", "README.md", "rejects.jsonl", "synth_summary.json", "journal.db"):
        (data / name).write_text("---\nlicense: other\n---\n" if name == "README.md" else name)
    return run


def test_push_sends_exactly_the_students_repository_files(run, hub, monkeypatch, capsys):
    result = run_cli(monkeypatch, capsys, "push", str(run), "--repo", "org/name")
    assert result.returncode == 0, result.stderr
    assert hub.repos == [{"name": "name", "organization": "org", "visibility": "public", "type": "model"}]
    (files,) = hub.commits
    assert sorted(files) == [
        "README.md",
        "chat_template.jinja",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert all(files[name] == (run / "student" / name).read_bytes() for name in files)
    assert "pushed 5 files" in result.stdout and TOKEN not in result.stdout + result.stderr
    assert all(headers["authorization"] == f"Bearer {TOKEN}" for _, _, headers in hub.requests)


def test_export_leaves_failed_variants_and_data_is_a_dataset(run, hub, monkeypatch, capsys):
    assert (
        run_cli(monkeypatch, capsys, "push", str(run), "--repo", "org/m", "--what", "export").returncode == 0
    )
    assert sorted(hub.commits[0]) == [
        "README.md",
        "gguf-f16/Modelfile",
        "gguf-f16/model-f16.gguf",
        "hf-float16/README.md",
        "hf-float16/config.json",
        "hf-float16/model.safetensors",
        "onnx/model.onnx",
        "parity.json",
    ]
    assert (
        run_cli(
            monkeypatch, capsys, "push", str(run), "--repo", "org/d", "--what", "data", "--private"
        ).returncode
        == 0
    )
    assert sorted(hub.commits[1]) == ["README.md", "train.parquet"]
    assert hub.repos[1] == {"name": "d", "organization": "org", "visibility": "private", "type": "dataset"}
    assert any("/api/datasets/org/d/commit/" in path for _, path, _ in hub.requests)


def test_a_run_from_before_cards_gets_one_written_for_the_push(run, hub, monkeypatch, capsys):
    (run / "student" / "README.md").unlink()
    assert run_cli(monkeypatch, capsys, "push", str(run), "--repo", "org/name").returncode == 0
    card = hub.commits[0]["README.md"].decode()
    (run.parent / "card.md").write_text(card)
    meta = ModelCard.load(run.parent / "card.md").data
    assert meta.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta.teacher == "demo"
    assert not (run / "student" / "README.md").exists()  # the run folder is left as it was


def test_without_hf_token_nothing_is_sent(run, hub, monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # a stored login is not used either
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "token").write_text("hf_storedlogin1234567")
    assert_one_error_line(
        run_cli(monkeypatch, capsys, "push", str(run), "--repo", "org/name"),
        "distil push needs a Hub token with write access in $HF_TOKEN",
    )
    assert hub.requests == []


def test_a_file_holding_a_secret_stops_the_push(run, hub, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdef123456")
    (run / "student" / "config.json").write_text('{"note": "sk-live-abcdef123456"}')
    line = assert_one_error_line(
        run_cli(monkeypatch, capsys, "push", str(run), "--repo", "o/n"),
        "config.json holds the value of $OPENAI_API_KEY, a secret: nothing was pushed",
    )
    assert "sk-live" not in line and hub.requests == []
    (run / "student" / "config.json").write_text("{}")
    monkeypatch.setenv("HF_TOKEN", "x" * 3000)  # a long secret: the chunks overlap by 2999
    big = run / "student" / "model.safetensors"
    big.write_bytes(b"\0" * ((1 << 20) - 5) + b"sk-live-abcdef123456")  # across two chunks
    assert_one_error_line(
        run_cli(monkeypatch, capsys, "push", str(run), "--repo", "o/n"),
        "model.safetensors holds the value of $OPENAI_API_KEY",
    )


def test_dry_run_lists_and_sends_nothing(run, hub, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")
    result = run_cli(monkeypatch, capsys, "push", str(run), "--repo", "org/name", "--dry-run")
    assert result.returncode == 0 and hub.requests == []
    assert "config.json\t2 bytes" in result.stdout and ".notes" not in result.stdout
    assert "would push 5 files" in result.stdout and "model repository org/name" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repo", "not an id"], "--repo not an id is not a Hub repository id; write it as org/name"),
        (["--repo", "o/n", "--what", "weights"], "--what weights is not one of student, adapter"),
        (["--repo", "o/n", "--what", "adapter"], "--what adapter pushes RUN/adapter, which a LoRA run"),
    ],
)
def test_bad_requests_are_one_line(run, hub, monkeypatch, capsys, args, message):
    assert_one_error_line(run_cli(monkeypatch, capsys, "push", str(run), *args), message)
    assert hub.requests == []


def test_a_refusing_hub_is_one_line_without_the_token(run, hub, monkeypatch, capsys):
    hub.refuse = 403
    line = assert_one_error_line(
        run_cli(monkeypatch, capsys, "push", str(run), "--repo", "o/n"), "the Hub refused the push to o/n"
    )
    assert TOKEN not in line


def test_the_dataset_card_pushed_is_the_one_datasetcard_reads(run, hub, monkeypatch, capsys):
    assert run_cli(monkeypatch, capsys, "push", str(run), "--repo", "o/d", "--what", "data").returncode == 0
    (run.parent / "pushed.md").write_bytes(hub.commits[0]["README.md"])
    assert DatasetCard.load(run.parent / "pushed.md").data.license == "other"


def test_offline_mode_is_one_line(run, monkeypatch, capsys):
    """huggingface_hub's own client refuses every request in offline mode (no fake here)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    set_client_factory(default_client_factory)
    assert_one_error_line(
        run_cli(monkeypatch, capsys, "push", str(run), "--repo", "o/n"),
        "HF_HUB_OFFLINE is set, so nothing can be sent to the Hub; unset it",
    )


def test_an_unreachable_hub_is_one_line(run, hub, monkeypatch, capsys):
    import httpx2

    def unreachable(request):
        raise httpx2.ConnectError("connection refused", request=request)

    monkeypatch.setattr(hub, "handle", unreachable)
    hub.install()
    assert_one_error_line(
        run_cli(monkeypatch, capsys, "push", str(run), "--repo", "o/n"),
        "could not reach the Hub (ConnectError: connection refused); check the network and HF_ENDPOINT",
    )


def test_data_without_its_rows_is_refused(run, hub, monkeypatch, capsys):
    (run / "data" / "train.parquet").unlink()
    assert_one_error_line(
        run_cli(monkeypatch, capsys, "push", str(run), "--repo", "o/d", "--what", "data"),
        "has no train.parquet: it was not written by this version",
    )
    assert hub.requests == []
