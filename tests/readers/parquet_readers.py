"""Checks that the tools our users read predictions with take `epitome predict`'s Parquet
output as it is, typed: pandas (through pyarrow) and DuckDB. Run by .ci/run:

    parquet_readers.py PREDICTIONS.parquet SAME_PREDICTIONS.jsonl

Every value must equal the JSON lines output of the same run.
"""
import json, sys
import duckdb, pandas as pd

parquet, jsonl = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(jsonl, encoding="utf-8")]
df = pd.read_parquet(parquet)
assert len(df) == len(rows), (len(df), len(rows))
assert str(df["truncated"].dtype) == "bool", df.dtypes
for m in ["ER", "IP", "EX"]:
    assert str(df[f"{m}_level"].dtype) == "int8", df.dtypes
    assert str(df[f"{m}_prob_0"].dtype) == "float32", df.dtypes
for (_, r), j in zip(df.iterrows(), rows):
    assert r["id"] == j["id"], (r["id"], j["id"])
    for m in ["ER", "IP", "EX"]:
        assert r[f"{m}_level"] == j[m]["level"]
        for level in range(3):
            assert abs(float(r[f"{m}_prob_{level}"]) - j[m]["probs"][level]) < 1e-6
        spans = [dict(s) for s in r[f"{m}_rationales"]]
        assert spans == j[m]["rationales"], (spans, j[m]["rationales"])

types = {row[0]: row[1] for row in duckdb.sql(f"describe select * from '{parquet}'").fetchall()}
assert types["ER_level"] == "TINYINT", types
assert types["ER_rationales"] == 'STRUCT("start" BIGINT, "end" BIGINT, "text" VARCHAR)[]', types
levels = duckdb.sql(f"select sum(ER_level + IP_level + EX_level) from '{parquet}'").fetchall()[0][0]
assert levels == sum(j[m]["level"] for j in rows for m in ["ER", "IP", "EX"]), levels
print(f"pandas and DuckDB read {len(rows)} predictions of {parquet}, typed, equal to {jsonl}")
