"""The study configuration as typed data, and the reserved-scene policy.

The workflow validates `config/config.yaml` against its JSON schema (which also fills defaults)
and then builds a :class:`Study` from it. Everything here is pure: no file access, so the
checks are cheap enough to run inside Snakemake input functions at DAG build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from hi4dfix.hi4d.layout import default_sequence_dir, parse_scene_name


class PolicyError(ValueError):
    """A study version breaks the reserved-scene policy or names an unknown scene."""


@dataclass(frozen=True)
class Version:
    name: str
    objective: str
    difix_train: tuple[str, ...]
    difix_eval: tuple[str, ...]
    nvs_eval: tuple[str, ...]
    render_profile: str
    decisions: tuple[str, ...] = ()
    expected_outputs: tuple[str, ...] = ()
    triplets: Mapping[str, Any] = field(default_factory=dict)
    tuning: Mapping[str, Any] = field(default_factory=dict)
    nvs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def difix_scenes(self) -> tuple[str, ...]:
        """Scenes that become DiFix samples (training or internal evaluation)."""
        return self.difix_train + self.difix_eval


@dataclass(frozen=True)
class Study:
    scenes: tuple[str, ...]
    reserved_scenes: frozenset[str]
    scene_dirs: Mapping[str, str]
    render_profiles: Mapping[str, Mapping[str, Any]]
    versions: Mapping[str, Version]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Study":
        data = config["data"]
        versions = {
            name: Version(
                name=name,
                objective=block["objective"],
                difix_train=tuple(block["difix_train"]),
                difix_eval=tuple(block["difix_eval"]),
                nvs_eval=tuple(block["nvs_eval"]),
                render_profile=block["render_profile"],
                decisions=tuple(block.get("decisions", ())),
                expected_outputs=tuple(block.get("expected_outputs", ())),
                triplets=dict(block.get("triplets", {})),
                tuning=dict(block.get("tuning", {})),
                nvs=dict(block.get("nvs", {})),
            )
            for name, block in config["versions"].items()
        }
        scenes = tuple(data["scenes"])
        for scene in scenes:
            parse_scene_name(scene)
        overrides = dict(data.get("scene_dirs", {}))
        unknown_overrides = sorted(set(overrides) - set(scenes))
        if unknown_overrides:
            raise PolicyError(f"data.scene_dirs names scenes not in data.scenes: {', '.join(unknown_overrides)}")
        return cls(
            scenes=scenes,
            reserved_scenes=frozenset(config["policy"]["reserved_scenes"]),
            scene_dirs={scene: overrides.get(scene, default_sequence_dir(scene)) for scene in scenes},
            render_profiles=dict(config["render_profiles"]),
            versions=versions,
        )

    def version(self, name: str) -> Version:
        try:
            return self.versions[name]
        except KeyError:
            known = ", ".join(sorted(self.versions))
            raise PolicyError(f"unknown study version {name!r}; config/config.yaml defines: {known}") from None

    def sequence_dir(self, scene: str) -> str:
        self._require_known(scene, where="scene")
        return self.scene_dirs[scene]

    def scene_for_sequence_dir(self, sequence_dir: str) -> str:
        for scene, folder in self.scene_dirs.items():
            if folder == sequence_dir:
                return scene
        raise PolicyError(f"no scene in data.scenes maps to the sequence folder {sequence_dir!r}")

    def _require_known(self, scene: str, where: str) -> None:
        if scene not in self.scene_dirs:
            raise PolicyError(f"{where}: unknown scene {scene!r}; add it to data.scenes in config/config.yaml")

    def check_version(self, name: str) -> Version:
        """Return the version after enforcing the policy; raise :class:`PolicyError` naming version and scene."""
        version = self.version(name)
        for key in ("difix_train", "difix_eval", "nvs_eval"):
            for scene in getattr(version, key):
                self._require_known(scene, where=f"version {name}, {key}")
        for key in ("difix_train", "difix_eval"):
            for scene in getattr(version, key):
                if scene in self.reserved_scenes:
                    raise PolicyError(
                        f"version {name}: reserved scene {scene} is in {key}; reserved scenes "
                        f"({', '.join(sorted(self.reserved_scenes))}) are for downstream 3DGS "
                        "evaluation only and never become DiFix training or evaluation samples"
                    )
        if set(version.nvs_eval) != self.reserved_scenes or len(version.nvs_eval) != len(self.reserved_scenes):
            extra = sorted(set(version.nvs_eval) - self.reserved_scenes)
            missing = sorted(self.reserved_scenes - set(version.nvs_eval))
            details = "; ".join(
                part
                for part in (
                    f"not reserved: {', '.join(extra)}" if extra else "",
                    f"missing: {', '.join(missing)}" if missing else "",
                )
                if part
            ) or "duplicates"
            raise PolicyError(f"version {name}: nvs_eval must be exactly the reserved scenes ({details})")
        train_pairs = {parse_scene_name(scene).pair: scene for scene in version.difix_train}
        for scene in version.difix_eval:
            pair = parse_scene_name(scene).pair
            if pair in train_pairs:
                raise PolicyError(
                    f"version {name}: difix_eval scene {scene} shares Hi4D pair{pair:02d} with difix_train "
                    f"scene {train_pairs[pair]}; internal evaluation must use a different pair"
                )
        if version.render_profile not in self.render_profiles:
            raise PolicyError(
                f"version {name}: render_profile {version.render_profile!r} is not defined under render_profiles"
            )
        return version
