"""Writes N (seeker post, response post) pairs of real length by recombining the shared
EPITOME posts, for the batch-scoring benchmark (docs/PERFORMANCE.md):

    python3 scripts/recombine-pairs.py ../shared/data/epitome-reddit N OUT.csv

Pair i takes response i mod R and seeker post (i * 7919) mod S (R responses, S distinct
seeker posts): every response and seeker length of the data occurs, in proportion, and a
seeker post recurs about N / S times, as in threads with many replies.
"""
import csv, sys

data, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seekers, responses = {}, {}
for name in ["emotional-reactions", "interpretations", "explorations"]:
    for row in csv.DictReader(open(f"{data}/{name}-reddit.csv", encoding="utf-8")):
        seekers.setdefault(row["seeker_post"], None)
        responses.setdefault(row["response_post"], None)
seekers, responses = list(seekers), list(responses)
with open(out, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["id", "seeker_post", "response_post"])
    for i in range(n):
        w.writerow([i, seekers[(i * 7919) % len(seekers)], responses[i % len(responses)]])
