"""Recursive (generational) knowledge distillation of VarGFaceNet (Yan et al., ICCVW 2019,
Sec. 3.3, Fig. 2).

The student trained in generation k initialises the student of generation k + 1, which is
trained again with the same recipe, so the conflict between the classification loss and the
angular-distillation target left by one generation is relaxed in the next. The paper reports
generations 0, 1 and 2. Each generation is a :class:`~fkdlib.zoo.ModelSpec`
whose ``init_from`` is the previous generation's spec, so every generation is cached on its
own and a later notebook run reuses them.

The paper also re-trains the teacher from its previous generation; ``recursive_teacher=True``
does the same for a ``"distill"`` spec: generation k + 1's teacher is the teacher spec
initialised from generation k's teacher.
"""

from __future__ import annotations

from ..errors import ConfigError
from .cache import ModelSpec


def _generation_name(base_name: str, generation: int) -> str:
    return f"{base_name or 'model'}-gen{generation}"


def recursive_specs(base_spec: ModelSpec, generations: int,
                    recursive_teacher: bool = False) -> list[ModelSpec]:
    """Specs of generations 0 .. ``generations`` (inclusive): ``generations + 1`` specs.

    Generation 0 is ``base_spec`` itself; generation k + 1 is ``base_spec`` with
    ``init_from`` = generation k and the name suffixed ``-gen<k+1>``.

    Raises:
        ConfigError: ``generations`` is negative, or ``recursive_teacher`` is asked for a spec
            whose ``method_kwargs`` have no ``"teacher"``.
    """
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 0:
        raise ConfigError(f"generations must be an integer >= 0, got {generations!r}")
    if recursive_teacher and "teacher" not in base_spec.method_kwargs:
        raise ConfigError(f"recursive_teacher needs a distillation spec with "
                          f"method_kwargs['teacher']; {base_spec.name or base_spec.backbone!r} "
                          f"(method {base_spec.method!r}) has none")
    specs = [base_spec]
    for generation in range(1, generations + 1):
        previous = specs[-1]
        method_kwargs = dict(base_spec.method_kwargs)
        if recursive_teacher:
            teacher = dict(base_spec.method_kwargs["teacher"])
            teacher["init_from"] = previous.method_kwargs["teacher"]
            teacher["name"] = _generation_name(teacher.get("name", ""), generation)
            method_kwargs["teacher"] = teacher
        specs.append(base_spec.replace(init_from=previous, method_kwargs=method_kwargs,
                                       name=_generation_name(base_spec.name, generation)))
    return specs
