"""Text sources: seeded disjoint class splits, entity markers, CSV/JSONL files, episodes on token ids."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fewjax.data import episodes
from fewjax.text import Tokenizer, sources
from tests.shared import SHARED

MODEL = SHARED / "models" / "all-MiniLM-L6-v2"
DATA = SHARED / "data" / "text"


@pytest.fixture(scope="module")
def tok():
    if not (MODEL / "tokenizer.json").is_file() or not DATA.is_dir():
        pytest.skip("shared model / text data not available")
    return Tokenizer.from_file(MODEL)


def test_split_classes_is_seeded_and_disjoint():
    names = [f"c{i}" for i in range(20)]
    a = sources.split_classes(names, sizes=(10, 5, 5), seed=0)
    assert a == sources.split_classes(list(reversed(names)), sizes=(10, 5, 5), seed=0)  # order-independent
    assert a != sources.split_classes(names, sizes=(10, 5, 5), seed=1)
    assert sorted(a["train"] + a["val"] + a["test"]) == sorted(names)
    with pytest.raises(ValueError, match="sizes"):
        sources.split_classes(names, sizes=(10, 10, 10), seed=0)


def test_clinc150_splits(tok):
    texts = {s: sources.clinc150_texts(s, data_dir=DATA) for s in sources.SPLITS}
    names = [set(t[2]) for t in texts.values()]
    assert [len(n) for n in names] == [50, 50, 50]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert "oos" not in set().union(*names)
    _, labels, _ = texts["test"]
    assert np.bincount(labels).tolist() == [150] * 50  # 100 train + 20 val + 30 test utterances per intent
    src = sources.clinc150("test", tokenizer=tok, data_dir=DATA)
    assert src.num_classes == 50 and src.example_shape == (32,) and src.dtype == np.int32
    # the first utterance of the first intent, tokenized, is what the source holds
    first = texts["test"][0][int(np.flatnonzero(labels == 0)[0])]
    np.testing.assert_array_equal(src.class_examples(0)[0], tok([first], max_length=32)[0])


def test_fewrel_markers_and_split(tok):
    texts, labels, names = sources.fewrel_texts("test", data_dir=DATA)
    assert len(names) == 6 and np.bincount(labels).tolist() == [700] * 6 and ":" in names[0]
    train_names = sources.fewrel_texts("train", data_dir=DATA)[2]
    assert len(train_names) == 10 and not set(train_names) & set(names)
    assert all(t.count("[E1]") == 1 and t.count("[/E2]") == 1 for t in texts)
    with pytest.raises(ValueError, match="split='val' has no classes"):
        sources.fewrel_texts("val", data_dir=DATA)
    assert sources.mark_entities(["a", "b", "c"], [0, 1], [2]) == "[E1] a b [/E1] [E2] c [/E2]"
    assert sources.mark_entities(["a", "b"], [0, 1], [1]) == "[E1] a [E2] b [/E2] [/E1]"
    before = tok(["[unused0] x"])[0].tolist()
    src = sources.fewrel("test", tokenizer=tok, data_dir=DATA, markers="unused")
    ex = src.class_examples(0)
    assert src.example_shape == (96,)  # the longest of all 16 relations needs 80 tokens
    assert all(((row >= 1) & (row <= 4)).sum() == 4 for row in ex[:50])  # one id each for the 4 markers
    assert tok(["[unused0] x"])[0].tolist() == before and 1 not in before  # the tokenizer given is not changed


def test_text_file_csv_and_jsonl(tmp_path, tok):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('text,category\n"hello, there",greet\nbye now,leave\nhi,greet\n', encoding="utf-8")
    src = sources.text_file(csv_path, tokenizer=tok, text_column="text", label_column="category")
    assert src.class_names == ("greet", "leave") and src.counts.tolist() == [2, 1] and src.example_shape == (32,)
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps({"t": t, "y": y}) for t, y in [("a", 1), ("b", 2), ("c", 1)]) + "\n")
    texts, labels, names = sources.text_file_texts(jl, text_column="t", label_column="y")
    assert names == ["1", "2"] and labels.tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match=r"no column 'text'.*\['t', 'y'\]"):
        sources.text_file(jl, tokenizer=tok)
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown file type"):
        sources.text_file_texts(tmp_path / "d.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sources.text_file_texts(tmp_path / "missing.csv")


def _read(tmp_path, name, content, **columns):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8"))
    return sources.text_file_texts(path, **columns)


def test_text_file_reads_excel_csv_spaces_tsv_quotes_and_json_numbers(tmp_path):
    assert _read(tmp_path, "bom.csv", "\ufefftext,label\nhi,a\n")[2] == ["a"]  # Excel's "CSV UTF-8"
    texts, labels, names = _read(tmp_path, "sp.csv", "text,label\nx,a\ny, a\nz,a \n")
    assert names == ["a"] and labels.tolist() == [0, 0, 0]  # " a" and "a " are the class "a"
    texts, labels, names = _read(tmp_path, "q.tsv", 'text\tlabel\n"Hi\ta\nthen "ok" she said\tb\nthird\ta\n')
    assert texts == ['"Hi', 'then "ok" she said', "third"] and names == ["a", "b"]  # quotes are text in a TSV
    rows = [("a", 1), ("b", 1.0), ("c", 2)]
    jl = "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows)
    assert _read(tmp_path, "n.jsonl", jl)[2] == ["1", "2"]  # 1 and 1.0 are one class


@pytest.mark.parametrize("name, content, match", [
    ("comma.csv", "text,label\nhello, world,a\n", r"line 2 has 1 more field.*quote a text"),
    ("empty.csv", "text,label\n  ,a\nok,b\n", r"line 2 has an empty or missing 'text'"),
    ("nolabel.csv", "text,label\nok,\n", r"line 2 has an empty or missing"),
    ("list.jsonl", '["a", "b"]\n', r"list.jsonl:1 is a JSON list, not an object"),
])
def test_text_file_refuses_rows_it_would_misread(tmp_path, name, content, match):
    with pytest.raises(ValueError, match=match):
        _read(tmp_path, name, content)


def test_text_file_drops_repeated_rows_and_warns(tmp_path):
    with pytest.warns(UserWarning, match="2 of 4 rows repeat an earlier row"):
        texts, labels, names = _read(tmp_path, "dup.csv", "text,label\nx,a\ny,b\nx,a\ny,b\n")
    assert texts == ["x", "y"] and labels.tolist() == [0, 1]
    with pytest.warns(UserWarning, match="1 texts carry more than one label"):
        _read(tmp_path, "amb.csv", "text,label\nx,a\nx,b\n")


def test_text_file_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match="is a folder; a text model reads a .csv"):
        sources.text_file_texts(tmp_path)


def test_text_file_warns_when_texts_are_cut_and_fits_them_up_to_512(tmp_path, tok):
    path = tmp_path / "long.csv"
    long = " ".join(["word"] * 150)
    path.write_text(f"text,label\n{long} refund,a\n{long} delivery,b\nshort,a\n")
    with pytest.warns(UserWarning, match=r"2 of 3 texts are longer than 32 tokens.*longest has 154"):
        sources.text_file(path, tokenizer=tok, max_length=32)
    src = sources.text_file(path, tokenizer=tok, max_length=None)  # "fit the data": 154 tokens -> bucket 256
    assert src.example_shape == (256,)
    assert not (src.class_examples(0)[0] == src.class_examples(1)[0]).all()


def test_data_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.delenv("FEWJAX_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="FEWJAX_DATA_DIR"):
        sources.text_data_dir(None)
    monkeypatch.setenv("FEWJAX_DATA_DIR", str(DATA.parent))
    assert sources.text_data_dir(None) == DATA


def test_episodes_on_token_ids(tok):
    import jax
    import jax.numpy as jnp

    src = sources.clinc150("train", tokenizer=tok, data_dir=DATA)
    sampler = episodes(src, ways=5, shots=1, queries=3, seed=0)
    task = sampler.sample_batch(0, 2)
    assert task.support.x.shape == (2, 5, 32) and task.query.x.shape == (2, 15, 32)
    assert task.support.x.dtype == np.int32 and (task.support.x[..., 0] == 101).all()  # every row starts [CLS]
    np.testing.assert_array_equal(sampler.sample_batch(0, 2).query.x, task.query.x)  # replayable
    dev = jax.jit(lambda st: sampler.device_sample(st, 3, jnp.arange(2)))(sampler.device_state())
    assert dev.support.x.shape == (2, 5, 32) and dev.support.x.dtype == jnp.int32


@pytest.mark.parametrize("dataset", ["clinc150", "fewrel"])
def test_label_names_join_the_support_as_one_more_example_per_class(dataset):
    from fewjax.experiment.config import base_config
    from fewjax.experiment.data import make_sampler, make_source
    from fewjax.text.datasets import label_name_examples, label_text

    c = base_config()
    c.dataset, c.data_dir, c.text.model, c.text.max_length = dataset, str(SHARED / "data"), str(MODEL), 32
    c.test_ways, c.test_shots, c.test_queries, c.text.label_names = 3, 1, 2, True
    source = make_source(c, "test")
    names = label_name_examples(c, source)
    task = make_sampler(c, "test", seed=1).sample(0)
    assert task.support.x.shape == (3 * 2, 32) and task.query.x.shape == (3 * 2, 32)
    name_rows = task.support.x[1::2]  # each class: its drawn example, then its name
    assert all(any((row == n).all() for n in names) for row in name_rows)
    decoded = Tokenizer.from_file(MODEL / "tokenizer.json").decode(name_rows[0])
    assert decoded in {label_text(n) for n in source.class_names}


def test_label_names_need_words(tmp_path, tok):
    from fewjax.experiment.config import base_config
    from fewjax.text.datasets import label_name_examples

    path = tmp_path / "numbers.csv"
    path.write_text("text,label\nhello,0\nbye,1\n")
    c = base_config()
    c.text.model, c.text.label_names = str(MODEL), True
    with pytest.raises(ValueError, match=r"2 class names have no words \(e.g. '0'\); turn label_names off"):
        label_name_examples(c, sources.text_file(path, tokenizer=tok))
