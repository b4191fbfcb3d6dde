"""The single entry point of the idea track: goals + knowledge -> candidate systems.

:func:`design_candidates` retrieves each goal's context as of the design time, then designs with
the offline combinatorial assembler when the LLM backend is the offline one (the embedded
default), or with the LLM agent otherwise. Used by the ``candidate_systems`` asset and the CLI.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from factory_pipeline.ideas.agent import design_with_agent
from factory_pipeline.ideas.assembly import assemble_candidates
from factory_pipeline.ideas.candidates import DesignBatch
from factory_pipeline.ideas.context import retrieve_context
from factory_pipeline.ideas.goals import DesignGoal
from factory_pipeline.ideas.past_results import PastResult
from factory_pipeline.ideas.sanity import DEFAULT_TOLERANCE
from factory_pipeline.knowledge.index import VectorIndex
from factory_pipeline.llm.backend import LLMBackend
from factory_pipeline.llm.offline import OFFLINE_MODEL, OfflineBackend
from factory_pipeline.schemas import KbConcept, KbSegment, ModuleDoc, SystemDoc
from factory_pipeline.strategy.systems import parse_system_spec, spec_hash


def design_candidates(
    goals: Sequence[DesignGoal],
    *,
    library: Mapping[str, ModuleDoc],
    concepts: Sequence[KbConcept],
    index: VectorIndex | None,
    llm: LLMBackend | None,
    as_of: dt.datetime,
    existing: Sequence[SystemDoc] = (),
    segments: Sequence[KbSegment] = (),
    context_limit: int = 8,
    tolerance: float = DEFAULT_TOLERANCE,
    past_results: Sequence[PastResult] = (),
) -> DesignBatch:
    """Candidate systems for every goal, in goal order (a :class:`DesignBatch`: a list of
    :class:`CandidateSystem` with ``dropped`` reasons and token counters).

    ``llm`` None or offline -> the combinatorial assembler (``backend="offline-assembler"``);
    any other backend -> the agent (``backend="llm:<model>"``). Existing systems only matter
    for the assembler's diversity: a near-duplicate of an existing system created at or before
    ``as_of`` is not designed again (the sanity check would reject it). ``past_results``
    (robustness evidence and decisions of earlier systems) reach the designers only when
    recorded at or before ``as_of``. Same inputs -> same list.
    """
    moment = as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=dt.UTC)
    batch = DesignBatch()
    offline = llm is None or isinstance(llm, OfflineBackend) or llm.model == OFFLINE_MODEL
    prior_specs = []
    for doc in existing:
        created = doc.created_at if doc.created_at.tzinfo else doc.created_at.replace(tzinfo=dt.UTC)
        if created > moment:
            continue
        spec, _ = parse_system_spec(doc.spec)
        if spec is not None:
            prior_specs.append(spec)
    hashes: set[str] = set()
    for goal in goals:
        context = retrieve_context(
            goal,
            index=index,
            library=library,
            concepts=concepts,
            as_of=moment,
            limit=context_limit,
            segments=segments,
            past=past_results,
        )
        if offline:
            made, dropped = assemble_candidates(
                goal,
                context,
                library,
                as_of=moment,
                existing_specs=[*prior_specs, *(c.spec for c in batch)],
                tolerance=tolerance,
            )
            made = [c for c in made if c.doc.spec_hash not in hashes]
        else:
            assert llm is not None
            made, dropped, stats = design_with_agent(
                goal, context, library, llm, as_of=moment, known_hashes=hashes
            )
            batch.prompt_tokens += stats["prompt_tokens"]
            batch.completion_tokens += stats["completion_tokens"]
            batch.repairs += stats["repairs"]
        hashes.update(spec_hash(c.spec, library) for c in made)
        batch.extend(made)
        batch.dropped.extend(dropped)
    return batch
