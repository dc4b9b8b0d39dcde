"""Probe: does a 2-layer organism learn Table-2 retrieval? (the recipe that worked in session 1)

Usage: python scripts/probe_table2_retrieval.py sum 1500 2e-3 small
  arg 1: `sum` (entry embeddings start as key+value) or `noentry` (random entry embeddings)
  arg 2: steps; arg 3: peak learning rate; `small` caps Table 2 at 4-6 entries.
Trains on 80% Table-2 lists / 20% Table-1 lists, single-turn, plain; every 100 steps prints:
step, loss, single-lookup accuracy (full-size tables, exact and last word), whole-list accuracy
on the training distribution, and one sample. Measured: with `small` and 2e-3, lists reached 92%
at step 1,200; without `small`, or at 4e-3, nothing by 1,500.
"""
import random
import sys
import time

import torch
import transformers

from transferlab.backends import HFBackend
from transferlab.organism import model as om
from transferlab.organism.build import tokenizer_corpus
from transferlab.organism.curriculum import PRIMITIVES, number_colours, random_tables, symbol_numbers
from transferlab.organism.tokenizer import train_tokenizer
from transferlab.propensities import get_propensity, prompt_with
from transferlab.tasks.table_lookup import render_tables
from transferlab.train.render import render_conversation
from transferlab.train.schedule import lr_at

torch.set_num_threads(1)
transformers.utils.logging.disable_progress_bar()
variant, steps = sys.argv[1], int(sys.argv[2])

tok = train_tokenizer(tokenizer_corpus())
if variant == "noentry":
    orig = om.share_space_variants
    def only_space(model, tokenizer):
        vocab = tokenizer.get_vocab(); w = model.get_input_embeddings().weight
        with torch.no_grad():
            for t, i in vocab.items():
                if t.startswith("Ġ") and t[1:] in vocab and "=" not in t: w[i] = w[vocab[t[1:]]]
    om.share_space_variants = only_space
m = om.new_organism(tok, 'shallow'); be = HFBackend(m, tok)
import transferlab.organism.curriculum as cur


def small_tables(rng):
    n = rng.randint(2, 4); mx = rng.randint(4, 6)
    syms = rng.sample(cur.GREEK, n); t1 = dict(zip(syms, rng.sample(range(1, mx + 1), n)))
    keys = list(range(1, mx + 1)); rng.shuffle(keys)
    return t1, {k: rng.choice(cur.COLOURS) for k in keys}
if "small" in sys.argv: random_tables = small_tables
rng = random.Random(0); p = get_propensity('plain')
def ep():
    t1,t2 = random_tables(rng)
    ask = number_colours if rng.random() < 0.8 else symbol_numbers
    q,a = ask(rng,t1,t2)
    return [{"role":"system","content":render_tables(t1,t2)},{"role":"user","content":q+" "+p.instruction},{"role":"assistant","content":a}]
t=time.time()
for s in range(steps):
    ds=[render_conversation(tok, ep()) for _ in range(32)]
    loss=be.forward_backward(ds); be.optim_step(lr_at(s, 4*steps, float(sys.argv[3]), 50))
    if (s+1)%100==0:
        exs=[PRIMITIVES['number_colour'](rng) for _ in range(64)]
        r=be.sample([prompt_with(e,p) for e in exs], 3)
        t1s=[random_tables(rng) for _ in range(64)]
        qa=[number_colours(rng,a,b) for a,b in t1s]
        msgs=[[{"role":"system","content":render_tables(a,b)},{"role":"user","content":q+" "+p.instruction}] for (a,b),(q,_) in zip(t1s,qa)]
        r2=be.sample(msgs, 20)
        print(s+1, round(loss,3), sum(x.strip()==e.answer for x,e in zip(r,exs))/64, sum(x.strip().split()[-1:]==[e.answer] for x,e in zip(r,exs))/64, sum(x.strip()==a for x,(q,a) in zip(r2,qa))/64, r[0], '|', r2[0], '|', qa[0][1], round(time.time()-t), flush=True)
