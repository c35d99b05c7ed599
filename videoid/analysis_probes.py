"""What the analysis pools' health check runs in a worker (see
:meth:`~videoid.analysis_pool.AnalysisPool.health`): loading the models their jobs
need. Module-level functions, to be sent to a worker by name; the heavy modules are
imported in the worker only, never in the server's process."""

from __future__ import annotations


def load_face_models() -> None:
    """The photo and face-match pools' models."""
    from .liveness import faces

    faces.warm()


def load_frame_models() -> None:
    """The live analysis pool's models (the face mesh, far faces, faces)."""
    from .liveness import frame_analysis

    frame_analysis.warm()
