"""The study configuration as typed data, and the reserved-scene policy.

The workflow validates `config/config.yaml` against its JSON schema (which also fills defaults)
and then builds a :class:`Study` from it. Everything here is pure: no file access, so the
checks are cheap enough to run inside Snakemake input functions at DAG build.

The policy is enforced on what a scene's data *is*, not on its name. Every scene resolves to

* a **sequence folder**: ``data.scene_dirs[scene]`` or the default ``pairNN/actionNN``, as the
  relative POSIX path under ``data.root`` it denotes (trailing slashes, ``./`` and ``..``
  normalised, see :func:`~hi4dfix.hi4d.layout.normalise_sequence_dir`), and
* a **(pair, action) identity**: for a folder overridden in ``data.scene_dirs`` whose last two
  parts follow Hi4D's ``pairNN/actionNN`` pattern, the pair and action those parts name
  (``pair15_1/pair15/fight15`` -> pair 15, ``fight``, whatever the scene is called); otherwise
  the pair and action of the scene's name.

With ``resolve_links`` (the workflow), folders are also compared as the file system resolves them
(symbolic links followed): a scene whose folder is a link to a reserved scene's data takes the
identity of the folder it resolves to, and a reserved scene must resolve to a folder of its own
``pairNN/actionNN`` (a reserved name pointed at a decoy elsewhere is refused). That reads the file
system once, when the study is built; everything else here is pure.

A DiFix scene (``difix_train``, ``difix_eval``) whose folder or identity is a reserved scene's
is refused, two scenes of ``data.scenes`` may not share a folder, names must be canonical
(``hi4d_pair15_fight``, not ``hi4d_pair015_fight``), and the different-pair rule between
``difix_train`` and ``difix_eval`` compares identities.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, field
from typing import Any, Mapping

from hi4dfix.hi4d.layout import (
    SceneName,
    default_sequence_dir,
    identity_from_sequence_dir,
    normalise_sequence_dir,
    parse_scene_name,
    resolve_sequence_dir,
)


class PolicyError(ValueError):
    """A study version breaks the reserved-scene policy or names an unknown scene."""


# The study's reserved scenes: constants of the study, not defaults. A config may reserve more
# scenes (``policy.reserved_scenes``), never fewer: an overlay dropping one would quietly turn a
# held-out scene into training data.
STUDY_RESERVED_SCENES = frozenset(
    {"hi4d_pair15_fight", "hi4d_pair16_jump", "hi4d_pair17_dance", "hi4d_pair19_piggyback"}
)


def block_eval_profile(block: Mapping[str, Any]) -> str | None:
    """The render profile of a raw version block's evaluation renders (``Version.eval_profile`` before a
    ``Version`` exists): ``eval_render_profile``, else ``render_profile``."""
    return block.get("eval_render_profile") or block.get("render_profile")


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
    extends: str | None = None  # the parent version (hi4dfix.ablations)
    # the renders DiFix is evaluated on (difix_eval test triplets, the reserved scenes' NVS arms): the
    # inference condition, kept when a grid varies how the training data is rendered; None: render_profile
    eval_render_profile: str | None = None

    @property
    def difix_scenes(self) -> tuple[str, ...]:
        """Scenes that become DiFix samples (training or internal evaluation)."""
        return self.difix_train + self.difix_eval

    @property
    def eval_profile(self) -> str:
        """The render profile of the evaluation renders (difix_eval and nvs_eval scenes)."""
        return self.eval_render_profile or self.render_profile

    def scene_profile(self, scene: str) -> str:
        """The render profile a scene of this version is rendered with: training scenes with
        ``render_profile``, evaluation scenes with :attr:`eval_profile`."""
        return self.render_profile if scene in self.difix_train else self.eval_profile


def _canonical(name: str, where: str) -> SceneName:
    try:
        return parse_scene_name(name)
    except ValueError as exc:
        raise PolicyError(f"{where}: {exc}") from None


def scene_identity(name: str, folder: str, overridden: bool) -> SceneName:
    """The (pair, action) a scene's data is: from an overridden folder that follows Hi4D's
    ``pairNN/actionNN`` pattern, else from the (canonical) name."""
    from_folder = identity_from_sequence_dir(folder) if overridden else None
    return from_folder if from_folder is not None else parse_scene_name(name)


def _describe(identity: SceneName) -> str:
    return f"Hi4D pair{identity.pair:02d} action {identity.action}"


@dataclass(frozen=True)
class Study:
    scenes: tuple[str, ...]
    reserved_scenes: frozenset[str]
    scene_dirs: Mapping[str, str]  # scene -> normalised sequence folder under data.root
    render_profiles: Mapping[str, Mapping[str, Any]]
    versions: Mapping[str, Version]
    # scene -> (pair, action) its data is; reserved scenes -> folder and identity even when
    # they are not in data.scenes (the default folder of their name)
    identities: Mapping[str, SceneName] = field(default_factory=dict)
    reserved_dirs: Mapping[str, str] = field(default_factory=dict)
    reserved_identities: Mapping[str, SceneName] = field(default_factory=dict)
    # scene (and reserved scene) -> its folder with symbolic links followed (resolve_links), else as written
    resolved_dirs: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], resolve_links: bool = False) -> "Study":
        """The study of a validated config; ``resolve_links`` also follows symbolic links under ``data.root``
        (the module doc)."""
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
                extends=block.get("extends"),
                eval_render_profile=block.get("eval_render_profile"),
            )
            for name, block in config["versions"].items()
        }
        scenes = tuple(data["scenes"])
        reserved = frozenset(config["policy"]["reserved_scenes"])
        for scene in scenes:
            _canonical(scene, "data.scenes")
        for scene in sorted(reserved):
            _canonical(scene, "policy.reserved_scenes")
        for scene in sorted(STUDY_RESERVED_SCENES - reserved):
            raise PolicyError(
                f"policy.reserved_scenes drops {scene}: {', '.join(sorted(STUDY_RESERVED_SCENES))} are the study's "
                "fixed reserved scenes (downstream 3DGS evaluation only); a config may add reserved scenes, never "
                "drop these (check every --configfile that sets policy.reserved_scenes)"
            )
        _check_render_profiles(config["render_profiles"])
        overrides = dict(data.get("scene_dirs", {}))
        unknown_overrides = sorted(set(overrides) - set(scenes))
        if unknown_overrides:
            raise PolicyError(f"data.scene_dirs names scenes not in data.scenes: {', '.join(unknown_overrides)}")
        root = str(data.get("root", "."))
        scene_dirs = {}
        for scene in scenes:
            try:
                scene_dirs[scene] = normalise_sequence_dir(overrides.get(scene, default_sequence_dir(scene)), root)
            except ValueError as exc:
                raise PolicyError(f"data.scene_dirs.{scene}: {exc}") from None
        reserved_dirs = {
            scene: scene_dirs.get(scene) or normalise_sequence_dir(default_sequence_dir(scene), root)
            for scene in sorted(reserved)
        }
        folders = {**reserved_dirs, **scene_dirs}
        resolved = {s: resolve_sequence_dir(f, root) if resolve_links else f for s, f in folders.items()}
        identities = {
            scene: scene_identity(scene, resolved[scene], scene in overrides or resolved[scene] != scene_dirs[scene])
            for scene in scenes
        }
        reserved_identities = {scene: identities.get(scene) or parse_scene_name(scene) for scene in sorted(reserved)}
        _refuse_decoys(reserved, folders, resolved, set(overrides))
        _refuse_shared_folders({scene: resolved[scene] for scene in scenes}, reserved, versions)
        return cls(
            scenes=scenes,
            reserved_scenes=reserved,
            scene_dirs=scene_dirs,
            render_profiles=dict(config["render_profiles"]),
            versions=versions,
            identities=identities,
            reserved_dirs=reserved_dirs,
            reserved_identities=reserved_identities,
            resolved_dirs=resolved,
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

    def identity(self, scene: str) -> SceneName:
        """The (pair, action) of the scene's data (see the module docstring)."""
        self._require_known(scene, where="scene")
        return self.identities[scene]

    def scene_for_sequence_dir(self, sequence_dir: str) -> str:
        try:
            wanted = normalise_sequence_dir(sequence_dir)
        except ValueError:
            wanted = sequence_dir
        for scene, folder in self.scene_dirs.items():
            if folder == wanted:
                return scene
        raise PolicyError(f"no scene in data.scenes maps to the sequence folder {sequence_dir!r}")

    def _require_known(self, scene: str, where: str) -> None:
        if scene not in self.scene_dirs:
            _canonical(scene, where)
            raise PolicyError(f"{where}: unknown scene {scene!r}; add it to data.scenes in config/config.yaml")

    def reserved_alias(self, scene: str) -> tuple[str, str] | None:
        """(reserved scene, why) when ``scene``'s data is a reserved scene's, else None."""
        if scene in self.reserved_scenes:
            return scene, "it is reserved"
        folder, identity = self.resolved_dirs.get(scene, self.sequence_dir(scene)), self.identity(scene)
        for reserved in sorted(self.reserved_scenes):
            reserved_folder = self.resolved_dirs.get(reserved, self.reserved_dirs[reserved])
            if folder == reserved_folder:
                return reserved, f"same sequence folder {folder}"
            if folder.startswith(f"{reserved_folder}/") or reserved_folder.startswith(f"{folder}/"):
                return reserved, f"folder {folder} and the reserved folder {reserved_folder} are nested"
            if identity == self.reserved_identities[reserved]:
                return reserved, f"same {_describe(identity)} (reserved folder {self.reserved_dirs[reserved]})"
        return None

    def check_version(self, name: str) -> Version:
        """Return the version after enforcing the policy; raise :class:`PolicyError` naming version and scene."""
        version = self.version(name)
        for key in ("difix_train", "difix_eval", "nvs_eval"):
            for scene in getattr(version, key):
                self._require_known(scene, where=f"version {name}, {key}")
        for key in ("difix_train", "difix_eval"):
            for scene in getattr(version, key):
                alias = self.reserved_alias(scene)
                if alias is None:
                    continue
                reserved, why = alias
                if reserved == scene:
                    raise PolicyError(
                        f"version {name}: reserved scene {scene} is in {key}; reserved scenes "
                        f"({', '.join(sorted(self.reserved_scenes))}) are for downstream 3DGS "
                        "evaluation only and never become DiFix training or evaluation samples"
                    )
                raise PolicyError(
                    f"version {name}: {key} scene {scene} (folder {self.scene_dirs[scene]} under data.root) "
                    f"is the data of reserved scene {reserved}: {why}; reserved scenes are for downstream "
                    "3DGS evaluation only and never become DiFix training or evaluation samples, "
                    "whatever they are called (check data.scene_dirs)"
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
        train_pairs = {self.identities[scene].pair: scene for scene in version.difix_train}
        for scene in version.difix_eval:
            pair = self.identities[scene].pair
            if pair in train_pairs:
                train = train_pairs[pair]
                raise PolicyError(
                    f"version {name}: difix_eval scene {scene} shares Hi4D pair{pair:02d} with difix_train "
                    f"scene {train} (folders {self.scene_dirs[scene]} and {self.scene_dirs[train]}); "
                    "internal evaluation must use a different pair"
                )
        for key, profile in (("render_profile", version.render_profile), ("eval_render_profile", version.eval_profile)):
            if profile not in self.render_profiles:
                raise PolicyError(f"version {name}: {key} {profile!r} is not defined under render_profiles")
        return version


def _refuse_decoys(
    reserved: frozenset[str], folders: Mapping[str, str], resolved: Mapping[str, str], overridden: set[str]
) -> None:
    """A reserved scene must be its own Hi4D sequence: a folder (links followed) ending in its pairNN/actionNN.
    Otherwise its name could guard a decoy while its real data became a DiFix sample under another name."""
    for scene in sorted(reserved):
        if scene not in overridden and resolved[scene] == folders[scene]:
            continue  # the default folder of its own name, no link: its own by construction
        if identity_from_sequence_dir(resolved[scene]) != parse_scene_name(scene):
            via = f" (a link to {resolved[scene]})" if resolved[scene] != folders[scene] else ""
            raise PolicyError(
                f"data.scene_dirs.{scene}: reserved scene {scene} maps to folder {folders[scene]}{via}, which is not "
                f"its own Hi4D sequence {default_sequence_dir(scene)}: a reserved scene must resolve to a folder "
                "ending in its own pairNN/actionNN, so that its name cannot guard other data while its own becomes "
                "a DiFix sample"
            )


def _refuse_shared_folders(
    scene_dirs: Mapping[str, str], reserved: frozenset[str], versions: Mapping[str, Version]
) -> None:
    """Two scenes of data.scenes resolving to one folder would be one data set under two names."""
    owner: dict[str, str] = {}
    for scene, folder in scene_dirs.items():
        if folder not in owner:
            owner[folder] = scene
            continue
        first = owner[folder]
        message = (
            f"data.scenes: {first} and {scene} resolve to the same sequence folder {folder} under data.root "
            "(check data.scene_dirs); each scene must be its own sequence"
        )
        reserved_one = next((s for s in (first, scene) if s in reserved), None)
        if reserved_one is not None:
            other = scene if reserved_one == first else first
            users = [
                f"version {v.name} {key}"
                for v in versions.values()
                for key in ("difix_train", "difix_eval")
                if other in getattr(v, key)
            ]
            message += (
                f"; {other} would make reserved scene {reserved_one}'s data"
                + (f" a DiFix sample ({', '.join(users)})" if users else " usable as a DiFix sample")
            )
        raise PolicyError(message)


def _check_render_profiles(profiles: Mapping[str, Mapping[str, Any]]) -> None:
    """What the schema cannot say: finite pose errors, and an external pattern naming each image."""
    for name, profile in profiles.items():
        for key, value in (profile.get("pose_error") or {}).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise PolicyError(f"render_profiles.{name}.pose_error.{key} is {value}; give a finite number")
        pattern = profile.get("external_pattern")
        if pattern:
            fields = {field for _, field, _, _ in string.Formatter().parse(pattern) if field}
            missing = [key for key in ("cam", "frame") if key not in fields]
            if missing:
                absent = " or ".join("{" + key + "}" for key in missing)
                raise PolicyError(
                    f"render_profiles.{name}.external_pattern {pattern!r} has no {absent}: "
                    "every camera and frame would read the same file; e.g. /renders/{scene}/{cam}/{frame:06d}.png"
                )
