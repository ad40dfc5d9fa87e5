"""LightningModules of the methods, selectable by name."""

from .base import MethodModule
from .dis2 import DIS2Module
from .kd import KDModule
from .mdico import MDiCoModule
from .single import SingleModule, TeacherModule

METHODS: dict[str, type[MethodModule]] = {
    cls.method: cls for cls in (SingleModule, TeacherModule, KDModule, MDiCoModule, DIS2Module)
}
GUIDED = ("kd", "mdico", "dis2")

__all__ = ["GUIDED", "METHODS", "MethodModule"]
