//! Parquet in and out: `predict --output X.parquet` (typed columns, the rows of the JSON
//! lines output), Parquet files written by pyarrow/pandas read by `predict` and `analyze` as
//! their CSV twins, merged Parquet shards, and errors that name the file, row and column.

mod common;

use arrow_array::{ArrayRef, Int32Array, ListArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use common::*;
use epitome::predict::{prediction_from_json, ParquetWriter, PredictionRows};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn committed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn as_json_lines(path: &Path) -> String {
    PredictionRows::open(path)
        .unwrap()
        .map(|p| format!("{}\n", p.unwrap().to_json()))
        .collect()
}

#[test]
fn predict_writes_parquet_with_typed_columns_and_the_rows_of_its_json_lines() {
    let (dir, model, input) = tiny_model_and_pairs(300);
    let d = dir.path();
    for name in ["p.jsonl", "p.csv", "p.parquet"] {
        let out = predict_at(d, d, &model, &input, name, &[]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
    let parquet = d.join("p.parquet");
    assert_eq!(
        as_json_lines(&parquet),
        std::fs::read_to_string(d.join("p.jsonl")).unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(parquet.metadata().unwrap().permissions().mode() & 0o077, 0);
    assert!(!d.join(".p.parquet.partial").exists());
    assert!(!d.join(".p.parquet.partial.converting").exists());

    // The CSV's columns, typed; a mechanism's rationale text and offsets are one list.
    let schema = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&parquet).unwrap())
        .unwrap()
        .schema()
        .clone();
    let csv_header: Vec<String> = csv::Reader::from_path(d.join("p.csv"))
        .unwrap()
        .headers()
        .unwrap()
        .iter()
        .filter(|h| !h.ends_with("_rationale_offsets"))
        .map(str::to_owned)
        .collect();
    let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
    assert_eq!(names, csv_header.iter().collect::<Vec<_>>());
    let type_of = |name: &str| schema.field_with_name(name).unwrap().data_type().clone();
    assert_eq!(type_of("id"), DataType::Utf8);
    assert_eq!(type_of("truncated"), DataType::Boolean);
    for m in ["ER", "IP", "EX"] {
        assert_eq!(type_of(&format!("{m}_level")), DataType::Int8);
        assert_eq!(type_of(&format!("{m}_prob_2")), DataType::Float32);
        let DataType::List(item) = type_of(&format!("{m}_rationales")) else {
            panic!("{m}_rationales is not a list")
        };
        let DataType::Struct(fields) = item.data_type() else {
            panic!("{m}_rationales holds no structs")
        };
        let spans: Vec<(&str, &DataType)> = fields
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        assert_eq!(
            spans,
            [
                ("start", &DataType::Int64),
                ("end", &DataType::Int64),
                ("text", &DataType::Utf8)
            ]
        );
    }

    // Shards written as Parquet merge into Parquet: every row of every shard, in input order.
    let mut shard_rows = String::new();
    let mut parts = Vec::new();
    for k in 0..3 {
        let name = format!("s{k}.parquet");
        let out = predict_at(d, d, &model, &input, &name, &["--shard", &format!("{k}/3")]);
        assert!(out.status.success(), "{}", stderr(&out));
        shard_rows.push_str(&as_json_lines(&d.join(&name)));
        parts.push(name);
    }
    let mut args = vec![
        "merge",
        "--input",
        input.to_str().unwrap(),
        "--output",
        "merged.parquet",
    ];
    args.extend(parts.iter().rev().map(String::as_str));
    let merged = epitome_at(d, d, &args);
    assert!(merged.status.success(), "{}", stderr(&merged));
    let merged = as_json_lines(&d.join("merged.parquet"));
    let id = |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap()["id"].clone();
    let merged_ids: Vec<_> = merged.lines().map(id).collect();
    let input_ids: Vec<_> = (0..300).map(|i| format!("t{i}")).collect();
    assert_eq!(merged_ids, input_ids);
    let mut a: Vec<&str> = merged.lines().collect();
    let mut b: Vec<&str> = shard_rows.lines().collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
}

#[test]
fn a_parquet_file_written_by_pandas_is_scored_like_its_csv_twin() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("model");
    let out = train_tiny(d, &model, &["--limit", "24"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (input, output) in [("pairs.parquet", "a.jsonl"), ("pairs.csv", "b.jsonl")] {
        let out = predict_at(d, d, &model, &committed(input), output, &[]);
        assert!(out.status.success(), "{input}: {}", stderr(&out));
    }
    let a = std::fs::read_to_string(d.join("a.jsonl")).unwrap();
    assert_eq!(a, std::fs::read_to_string(d.join("b.jsonl")).unwrap());
    // int64 ids are read as the numbers they are.
    assert_eq!(jsonl_ids(&d.join("a.jsonl"))[0], "1000");
    assert_eq!(a.lines().count(), 24);
}

#[test]
fn analyze_reads_parquet_interactions_and_predictions_as_it_reads_csv_and_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The platform the committed interactions.parquet was made from (its script says how).
    let synth = d.join("synth");
    let out = epitome_at(
        d,
        d,
        &[
            "synth-platform",
            "--out",
            synth.to_str().unwrap(),
            "--interactions",
            "2000",
            "--supporters",
            "60",
            "--seed",
            "7",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let jsonl = synth.join("predictions.jsonl");
    let predictions = synth.join("predictions.parquet");
    let mut w = ParquetWriter::new(
        std::fs::File::create(&predictions).unwrap(),
        &epitome::mechanism::Mechanism::ALL,
    )
    .unwrap();
    for line in std::fs::read_to_string(&jsonl).unwrap().lines() {
        w.push(prediction_from_json(line, &epitome::mechanism::Mechanism::ALL).unwrap())
            .unwrap();
    }
    w.finish().unwrap();

    let analyze = |input: &Path, levels: &Path, out: &str| -> serde_json::Value {
        let report = d.join(out);
        let o = epitome_at(
            d,
            d,
            &[
                "analyze",
                "--input",
                input.to_str().unwrap(),
                "--predictions",
                levels.to_str().unwrap(),
                "--out",
                report.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{out}: {}", stderr(&o));
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(report.join("insights.json")).unwrap())
                .unwrap();
        // Which files were read differs, by design; everything found in them must not.
        let input = v["input"].as_object_mut().unwrap();
        for key in ["file", "sha256", "levels_source"] {
            input.remove(key);
        }
        v
    };
    let from_csv = analyze(&synth.join("interactions.csv"), &jsonl, "csv");
    let from_parquet = analyze(&committed("interactions.parquet"), &predictions, "parquet");
    assert_eq!(from_csv["input"]["interactions"], 2000);
    assert_eq!(from_parquet, from_csv);
}

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn bad_parquet_input_is_named_by_file_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = |values: &[&str]| -> ArrayRef { Arc::new(StringArray::from(values.to_vec())) };
    let model = d.join("model");
    let out = train_tiny(d, &model, &["--limit", "24"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A missing column is named, with the columns the file has.
    let missing = d.join("missing.parquet");
    write_parquet(&missing, vec![("seeker_post", text(&["s"]))]);
    // A column of a type without a text form is named with its type.
    let listed = d.join("listed.parquet");
    let lists: ArrayRef = Arc::new(ListArray::from_iter_primitive::<
        arrow_array::types::Int32Type,
        _,
        _,
    >(vec![Some(vec![Some(1)])]));
    write_parquet(
        &listed,
        vec![("seeker_post", text(&["s"])), ("response_post", lists)],
    );
    // Not Parquet at all.
    let garbage = d.join("garbage.parquet");
    std::fs::write(&garbage, b"seeker_post,response_post\na,b\n").unwrap();
    for (file, expected) in [
        (&missing, "no column 'response_post' (found: seeker_post)"),
        (&listed, "column 'response_post' is of type List"),
        (&garbage, "not a readable Parquet file"),
    ] {
        let out = epitome_at(
            d,
            d,
            &[
                "predict",
                "--model",
                model.to_str().unwrap(),
                "--input",
                file.to_str().unwrap(),
                "--output",
                "out.jsonl",
            ],
        );
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(file.to_str().unwrap()), "{err}");
        assert!(err.contains(expected), "{err}");
        assert!(!d.join("out.jsonl").exists());
    }

    // A bad value is named by row (not line) and column.
    let interactions = d.join("interactions.parquet");
    write_parquet(
        &interactions,
        vec![
            ("id", text(&["a", "b", "c"])),
            ("seeker_post", text(&["s", "s", "s"])),
            ("response_post", text(&["r", "r", "r"])),
        ],
    );
    let predictions = d.join("predictions.parquet");
    let level = |v: Vec<i32>| -> ArrayRef { Arc::new(Int32Array::from(v)) };
    write_parquet(
        &predictions,
        vec![
            ("id", text(&["a", "b", "c"])),
            ("ER_level", level(vec![0, 1, 2])),
            ("IP_level", level(vec![0, 1, 7])),
            ("EX_level", level(vec![0, 1, 2])),
        ],
    );
    let out = epitome_at(
        d,
        d,
        &[
            "analyze",
            "--input",
            interactions.to_str().unwrap(),
            "--predictions",
            predictions.to_str().unwrap(),
            "--out",
            "report",
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("predictions.parquet, row 3, field 'IP_level'"),
        "{err}"
    );
}
