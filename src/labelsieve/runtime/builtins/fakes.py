"""viam-server's builtin fake components (`"model": "fake"`), so published example configs and users' test configs run
unchanged: motor, base, arm, camera, sensor, generic, encoder, servo and movement sensor, model `rdk:builtin:fake`.

Each takes the attributes viam-server's fake of the same API takes (facts read from rdk's `components/*/fake`), and
behaves as a plausible device would rather than doing nothing: motion is simulated on the monotonic clock, so a motor's
position advances while it is powered, `go_for` returns when the revolutions are done (`|revolutions / rpm|` minutes,
as in rdk) and `stop` (or robot StopAll) ends any motion at once. Attributes a fake does not read are logged and
ignored, as viam-server ignores them; a wrong type on one it reads names the resource and field. Methods with no
sensible fake answer are UNIMPLEMENTED with a message saying so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, cast

import numpy as np
from grpclib import GRPCError, Status
from PIL import Image
from viam.components.arm import Arm, JointPositions, KinematicsFileFormat, Pose
from viam.components.base import Base, Vector3
from viam.components.camera import Camera
from viam.components.encoder import Encoder
from viam.components.generic import Generic
from viam.components.motor import Motor
from viam.components.movement_sensor import GeoPoint, MovementSensor, Orientation
from viam.components.sensor import Sensor
from viam.components.servo import Servo
from viam.media.video import CameraMimeType, NamedImage
from viam.proto.app.robot import ComponentConfig
from viam.proto.common import ResourceName, ResponseMetadata
from viam.proto.component.arm import GetPropertiesResponse as ArmProperties
from viam.proto.component.camera import GetPropertiesResponse as CameraProperties
from viam.proto.component.camera import IntrinsicParameters
from viam.proto.component.encoder import PositionType
from viam.proto.component.movementsensor import GetAccuracyResponse
from viam.resource.base import ResourceBase
from viam.resource.types import Model
from viam.utils import ValueTypes, datetime_to_timestamp, struct_to_dict

from labelsieve.attributes import Attributes, FieldProblem, did_you_mean, resolve_path
from labelsieve.errors import ConfigError
from labelsieve.runtime.builtins import MachineContext, register
from labelsieve.runtime.config import MachineConfig, ResourceConfig

__all__ = ["FakeArm", "FakeBase", "FakeCamera", "FakeEncoder", "FakeGeneric", "FakeMotor", "FakeMovementSensor", "FakeSensor",
           "FakeServo"]

log = logging.getLogger(__name__)

#: The model every fake is served under; the config's short form `"fake"` means this.
FAKE = Model.from_string("rdk:builtin:fake")


@dataclass(frozen=True)
class NoAttributes(Attributes):
    """A fake that reads no attributes (the sensor, generic, servo and movement sensor)."""


class _Fake:
    """What every fake shares: its model, tolerant attribute parsing, dependencies and construction. A plain mixin,
    first in each fake's bases: the SDK names a resource after every resource class in its MRO."""

    name: str
    MODEL: ClassVar[Model] = FAKE
    Config: ClassVar[type[Attributes]] = NoAttributes
    #: viam-server's spellings of attribute names that are not Python identifiers (the arm's "arm-model").
    ALIASES: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def attributes(cls, config: ComponentConfig, *, warn: bool = False) -> Any:
        given = {cls.ALIASES.get(key, key): value for key, value in struct_to_dict(config.attributes).items()}
        known = {f.name for f in dataclasses.fields(cls.Config)}
        for key in sorted(given.keys() - known) if warn else ():
            hint = did_you_mean(key, known) or f"it reads {', '.join(sorted(known)) or 'none'}"
            log.warning("%s: ignoring attribute '%s', which the fake %s does not read (%s)", config.name, key,
                        cls.subtype(), hint)
        try:
            return cls.Config.parse(config.name, {key: value for key, value in given.items() if key in known})
        except ConfigError as exc:  # name the field as the user spelt it
            spelt = {f"attributes.{ours}": f"attributes.{theirs}" for theirs, ours in cls.ALIASES.items()}
            raise ConfigError(exc.resource, spelt.get(exc.field, exc.field), exc.problem, exc.fix) from None

    @classmethod
    def subtype(cls) -> str:
        """"motor", "arm"...: from the viam class beside this mixin, whose `API` is Final (declaring it here clashes)."""
        return str(cast(Any, cls).API.resource_subtype)

    @classmethod
    def validate_config(cls, config: ComponentConfig) -> tuple[Sequence[str], Sequence[str]]:
        return cls.dependencies(cls.attributes(config, warn=True)), []

    @classmethod
    def dependencies(cls, attributes: Any) -> list[str]:
        return []

    @classmethod
    def new(cls, config: ComponentConfig, dependencies: Mapping[ResourceName, ResourceBase]) -> Self:
        fake = cls(config.name)  # type: ignore[call-arg]
        fake.setup(cls.attributes(config), {name.name: client for name, client in dependencies.items()})
        return fake

    def setup(self, attributes: Any, dependencies: Mapping[str, ResourceBase]) -> None:
        """Take the parsed attributes (and dependency clients by name)."""

    def unimplemented(self, what: str, instead: str = "") -> GRPCError:
        return GRPCError(Status.UNIMPLEMENTED, f"the fake {self.subtype()} '{self.name}' has no {what}"
                         + (f"; {instead}" if instead else ""))

    def invalid(self, problem: str) -> GRPCError:
        return GRPCError(Status.INVALID_ARGUMENT, f"{self.subtype()} '{self.name}': {problem}")


class Track:
    """A quantity moving at a constant rate (units per second) since it was last set, read on the monotonic clock:
    a simulated position that needs no background task."""

    def __init__(self) -> None:
        self._value, self._since, self.rate = 0.0, time.monotonic(), 0.0

    @property
    def value(self) -> float:
        return self._value + self.rate * (time.monotonic() - self._since)

    def set(self, value: float | None = None, rate: float | None = None) -> None:
        self._value, self._since = self.value if value is None else value, time.monotonic()
        self.rate = self.rate if rate is None else rate


class Operation:
    """The one timed motion an actuator runs at a time; a new command or `stop` cancels it, as viam-server's
    single-operation manager does."""

    def __init__(self) -> None:
        self._wait: asyncio.Future[None] | None = None

    @property
    def running(self) -> bool:
        return self._wait is not None and not self._wait.done()

    async def run(self, seconds: float) -> bool:
        """Wait out the motion; False if it was cancelled (the caller going away still cancels the caller)."""
        self.cancel()
        self._wait = wait = asyncio.ensure_future(asyncio.sleep(seconds))
        await asyncio.wait({wait})
        return not wait.cancelled()

    def cancel(self) -> None:
        if self._wait is not None:
            self._wait.cancel()


# --- motor and encoder ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MotorConfig(Attributes):
    """viam-server's fake motor attributes; `board`, `pins`, `pwm_freq`, the power limits and `direction_flip` are
    accepted for compatibility and change nothing in a simulation."""

    max_rpm: float = 100.0
    encoder: str = ""
    ticks_per_rotation: int = 0
    board: str = ""
    pins: dict[str, str] = field(default_factory=dict)
    pwm_freq: int = 0
    min_power_pct: float = 0.0
    max_power_pct: float = 0.0
    direction_flip: bool = False

    def check(self) -> None:
        if self.max_rpm <= 0:
            raise FieldProblem("max_rpm", f"must be positive, got {self.max_rpm}", "leave it out for viam-server's 100")
        if self.encoder and self.ticks_per_rotation <= 0:
            raise FieldProblem("ticks_per_rotation", "must be positive for a motor with an encoder",
                               "e.g. \"ticks_per_rotation\": 1024")


@register
class FakeMotor(_Fake, Motor):
    """Power in [-1, 1] turns at `power * max_rpm`; the position (revolutions) is its own, or, with `encoder` naming
    a fake encoder, that encoder's ticks / `ticks_per_rotation`, which the motor drives as viam-server's does."""

    Config = MotorConfig

    @classmethod
    def dependencies(cls, attributes: MotorConfig) -> list[str]:
        return [attributes.encoder] if attributes.encoder else []

    def setup(self, attributes: MotorConfig, dependencies: Mapping[str, ResourceBase]) -> None:
        self.config, self.power, self.track, self.operation = attributes, 0.0, Track(), Operation()
        self.encoder = dependencies.get(attributes.encoder)

    async def _drive(self, power: float, position: float | None = None) -> None:
        """Turn at `power` from `position` (default: where it is), and tell the encoder, if any."""
        self.power = power
        self.track.set(await self.get_position() if position is None else position, power * self.config.max_rpm / 60)
        if self.encoder is not None:
            ticks = self.config.ticks_per_rotation
            await self.encoder.do_command({"set_position": self.track.value * ticks, "set_speed": self.track.rate * 60 * ticks})

    async def set_power(self, power: float, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> None:
        if not -1 <= power <= 1:
            raise self.invalid(f"power must be between -1 and 1, got {power}")
        self.operation.cancel()
        await self._drive(power)

    async def go_for(self, rpm: float, revolutions: float, *, extra: Any = None, timeout: float | None = None,
                     **kwargs: Any) -> None:
        """Turn `revolutions` at `rpm` (clipped to max_rpm) and return when done; 0 revolutions turns until stopped."""
        if abs(rpm) < 0.1:
            raise self.invalid(f"cannot move at an rpm that is nearly 0 (got {rpm})")
        rpm = math.copysign(min(abs(rpm), self.config.max_rpm), rpm)
        if revolutions == 0:
            self.operation.cancel()
            return await self._drive(rpm / self.config.max_rpm)
        direction = math.copysign(1, rpm * revolutions)
        start = await self.get_position()
        await self._drive(direction * abs(rpm) / self.config.max_rpm, start)
        if await self.operation.run(abs(revolutions / rpm) * 60):
            await self._drive(0.0, start + direction * abs(revolutions))

    async def go_to(self, rpm: float, position_revolutions: float, *, extra: Any = None, timeout: float | None = None,
                    **kwargs: Any) -> None:
        distance = position_revolutions - await self.get_position()
        if distance:
            await self.go_for(abs(rpm), distance)

    async def set_rpm(self, rpm: float, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> None:
        await self.go_for(rpm, 0)

    async def reset_zero_position(self, offset: float, *, extra: Any = None, timeout: float | None = None,
                                  **kwargs: Any) -> None:
        """The current position plus `offset` becomes zero."""
        await self._drive(self.power, -offset)

    async def get_position(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> float:
        if self.encoder is None:
            return self.track.value
        ticks, _ = await self.encoder.get_position()  # type: ignore[attr-defined]
        return float(ticks) / self.config.ticks_per_rotation

    async def get_properties(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> Motor.Properties:
        return Motor.Properties(position_reporting=True)

    async def stop(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> None:
        self.operation.cancel()
        await self._drive(0.0)

    async def is_powered(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> tuple[bool, float]:
        return abs(self.power) >= 0.005, self.power

    async def is_moving(self) -> bool:
        return abs(self.power) >= 0.005

    async def close(self) -> None:
        self.operation.cancel()


@dataclass(frozen=True)
class EncoderConfig(Attributes):
    """viam-server's fake encoder steps every `update_rate_msec`; this one is continuous, so the value changes nothing."""

    update_rate_msec: int = 100


@register
class FakeEncoder(_Fake, Encoder):
    """Counts ticks at the speed a fake motor sets through `do_command({"set_speed": ticks_per_minute})`;
    `{"set_position": ticks}` sets the count, as viam-server's fake encoder offers its motor."""

    Config = EncoderConfig

    def setup(self, attributes: EncoderConfig, dependencies: Mapping[str, ResourceBase]) -> None:
        self.ticks = Track()

    async def get_position(self, position_type: PositionType.ValueType | None = None, *, extra: Any = None,
                           timeout: float | None = None, **kwargs: Any) -> tuple[float, PositionType.ValueType]:
        if position_type == PositionType.POSITION_TYPE_ANGLE_DEGREES:
            raise self.unimplemented("angle in degrees", "it counts ticks")
        return self.ticks.value, PositionType.POSITION_TYPE_TICKS_COUNT

    async def reset_position(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> None:
        self.ticks.set(0.0)

    async def get_properties(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> Encoder.Properties:
        return Encoder.Properties(ticks_count_supported=True, angle_degrees_supported=False)

    async def do_command(self, command: Mapping[str, ValueTypes], *, timeout: float | None = None,
                         **kwargs: Any) -> Mapping[str, ValueTypes]:
        values = {key: command[key] for key in ("set_position", "set_speed") if key in command}
        if command.keys() - values.keys() or not all(type(v) in (int, float) for v in values.values()):
            raise self.invalid(f"do_command takes numbers under 'set_position' (ticks) and 'set_speed' (ticks per "
                               f"minute), got {dict(command)}")
        position, speed = (float(values[key]) if key in values else None  # type: ignore[arg-type]
                           for key in ("set_position", "set_speed"))
        self.ticks.set(position, None if speed is None else speed / 60)
        return {}


# --- base and servo ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BaseConfig(Attributes):
    """The wheeled base's size attributes, reported by `get_properties` (viam-server's fake base is 600 mm wide)."""

    width_mm: int = 600
    wheel_circumference_mm: int = 200

    def check(self) -> None:
        for name in ("width_mm", "wheel_circumference_mm"):
            if getattr(self, name) <= 0:
                raise FieldProblem(name, f"must be positive, got {getattr(self, name)}")


@register
class FakeBase(_Fake, Base):
    """`move_straight` and `spin` take distance / speed seconds and return when done; a non-zero `set_power` or
    `set_velocity` moves until `stop`."""

    Config = BaseConfig

    def setup(self, attributes: BaseConfig, dependencies: Mapping[str, ResourceBase]) -> None:
        self.config, self.operation, self.driving = attributes, Operation(), False

    async def _move(self, amount: float, speed: float) -> None:
        self.driving = False
        if amount and speed:
            await self.operation.run(abs(amount / speed))
        else:
            self.operation.cancel()

    async def move_straight(self, distance: int, velocity: float, *, extra: Any = None, timeout: float | None = None,
                            **kwargs: Any) -> None:
        await self._move(distance, velocity)

    async def spin(self, angle: float, velocity: float, *, extra: Any = None, timeout: float | None = None,
                   **kwargs: Any) -> None:
        await self._move(angle, velocity)

    def _drive(self, linear: Vector3, angular: Vector3) -> None:
        self.operation.cancel()
        self.driving = any((linear.x, linear.y, linear.z, angular.x, angular.y, angular.z))

    async def set_power(self, linear: Vector3, angular: Vector3, *, extra: Any = None, timeout: float | None = None,
                        **kwargs: Any) -> None:
        self._drive(linear, angular)

    async def set_velocity(self, linear: Vector3, angular: Vector3, *, extra: Any = None, timeout: float | None = None,
                           **kwargs: Any) -> None:
        self._drive(linear, angular)

    async def stop(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> None:
        self._drive(Vector3(), Vector3())

    async def is_moving(self) -> bool:
        return self.driving or self.operation.running

    async def get_properties(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> Base.Properties:
        return Base.Properties(width_meters=self.config.width_mm / 1000, turning_radius_meters=0.0,
                               wheel_circumference_meters=self.config.wheel_circumference_mm / 1000)

    async def close(self) -> None:
        self.operation.cancel()


@register
class FakeServo(_Fake, Servo):
    """Holds the angle it was moved to (0-180 degrees, as a hobby servo)."""

    def setup(self, attributes: NoAttributes, dependencies: Mapping[str, ResourceBase]) -> None:
        self.angle = 0

    async def move(self, angle: int, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> None:
        if not 0 <= angle <= 180:
            raise self.invalid(f"angle must be between 0 and 180 degrees, got {angle}")
        self.angle = angle

    async def get_position(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> int:
        return self.angle

    async def stop(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> None:
        """A servo holds its angle; stopping changes nothing."""

    async def is_moving(self) -> bool:
        return False


# --- arm --------------------------------------------------------------------------------------------------------------

#: The arm models viam-server's fake arm can imitate by name, and their joint counts.
ARM_JOINTS: Mapping[str, int] = {"ur5e": 6, "ur20": 6, "xArm6": 6, "xArm7": 7, "lite6": 6, "eva": 6, "so101": 5}


@dataclass(frozen=True)
class ArmConfig(Attributes):
    """`arm-model` (a name in ARM_JOINTS) or `model-path` (a kinematics JSON file), as viam-server's fake arm;
    with neither it has no joints, as there."""

    arm_model: str = ""
    model_path: str = ""

    def check(self) -> None:
        if self.arm_model and self.model_path:
            raise FieldProblem("arm_model", "and 'model-path' cannot both be given", "keep one of them")
        if self.arm_model and self.arm_model not in ARM_JOINTS:
            raise FieldProblem("arm_model", f"'{self.arm_model}' is not an arm the fake knows",
                               did_you_mean(self.arm_model, ARM_JOINTS) or f"use one of {', '.join(ARM_JOINTS)}")
        self.joints()

    def joints(self) -> int:
        """The degrees of freedom: the named model's, or the non-fixed joints of the kinematics file."""
        if not self.model_path:
            return ARM_JOINTS.get(self.arm_model, 0)
        try:
            joints = json.loads(resolve_path(self.model_path).read_text())["joints"]
            return sum(1 for joint in joints if joint.get("type") != "fixed")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FieldProblem("model_path", f"is not a readable kinematics JSON file with a 'joints' list ({exc})",
                               "give the path of a viam kinematics .json file") from None


@register
class FakeArm(_Fake, Arm):
    """Joint positions round-trip (their count checked against the model); the end pose is the last one it was moved
    to, since a fake computes no kinematics; it never moves for long, so `is_moving` is false."""

    Config = ArmConfig
    ALIASES: ClassVar[dict[str, str]] = {"arm-model": "arm_model", "model-path": "model_path"}

    @classmethod
    def expand(cls, resource: ResourceConfig, config: MachineConfig, machine: MachineContext) -> ResourceConfig:
        """A relative kinematics file is the config folder's (the runtime's process has no LABELSIEVE_CONFIG_DIR)."""
        return machine.absolute(resource, "model_path", "model-path")

    def setup(self, attributes: ArmConfig, dependencies: Mapping[str, ResourceBase]) -> None:
        self.config, self.joints = attributes, JointPositions(values=[0.0] * attributes.joints())
        self.pose = Pose(o_z=1.0)

    async def get_end_position(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> Pose:
        return self.pose

    async def move_to_position(self, pose: Pose, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> None:
        self.pose = pose

    async def move_to_joint_positions(self, positions: JointPositions, *, extra: Any = None, timeout: float | None = None,
                                      **kwargs: Any) -> None:
        await self.move_through_joint_positions([positions])

    async def move_through_joint_positions(self, positions: Sequence[JointPositions], options: Any = None, *,
                                           extra: Any = None, timeout: float | None = None, **kwargs: Any) -> None:
        expected = len(self.joints.values)
        for step in positions:
            if len(step.values) != expected:
                raise self.invalid(f"has {expected} joints, got {len(step.values)} joint positions")
        if positions:
            self.joints = JointPositions(values=list(positions[-1].values))

    async def move_through_joint_positions_streamed(self, *args: Any, **kwargs: Any) -> Any:
        raise self.unimplemented("streamed trajectories", "call move_through_joint_positions")

    async def get_joint_positions(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> JointPositions:
        return self.joints

    async def stop(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> None:
        """Its moves are instant, so there is nothing to stop."""

    async def is_moving(self) -> bool:
        return False

    async def get_kinematics(self, *, extra: Any = None, timeout: float | None = None,
                             **kwargs: Any) -> tuple[KinematicsFileFormat.ValueType, bytes]:
        if not self.config.model_path:
            raise self.unimplemented("kinematics file", "give it one with the 'model-path' attribute")
        data = await asyncio.to_thread(resolve_path(self.config.model_path).read_bytes)
        return KinematicsFileFormat.KINEMATICS_FILE_FORMAT_SVA, data

    async def get_3d_models(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> Mapping[str, Any]:
        return {}

    async def set_manual_mode(self, *args: Any, **kwargs: Any) -> None:
        raise self.unimplemented("manual mode")

    async def get_manual_mode(self, *args: Any, **kwargs: Any) -> bool:
        raise self.unimplemented("manual mode")

    async def get_properties(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> Arm.Properties:
        return ArmProperties(support_manual_mode=False, support_cartesian_commands=True)


# --- camera, sensor, generic ------------------------------------------------------------------------------------------

#: viam-server's fake camera: 1280x720 unless told; its pinhole intrinsics, given there for 1024x768, are scaled to the image.
CAMERA_SIZE = (1280, 720)
_INTRINSICS_SIZE, _FOCAL, _CENTER = (1024, 768), (821.32642889, 821.68607359), (494.95941428, 370.70529534)
_MAX_SIDE = 8192


@dataclass(frozen=True)
class CameraConfig(Attributes):
    """`width` / `height` as viam-server's fake camera (one given: the other keeps 16:9); `animated` and
    `rtp_passthrough` are accepted, and the image stays still."""

    width: int = 0
    height: int = 0
    animated: bool = False
    rtp_passthrough: bool = False

    def check(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if value < 0 or value % 2 or value > _MAX_SIDE:
                raise FieldProblem(name, f"must be an even number of pixels up to {_MAX_SIDE}, got {value}",
                                   "odd resolutions cannot be rendered; leave it out for 1280x720")

    def size(self) -> tuple[int, int]:
        width, height = self.width, self.height
        if width and not height:
            height = _even(width * CAMERA_SIZE[1] / CAMERA_SIZE[0])
        elif height and not width:
            width = _even(height * CAMERA_SIZE[0] / CAMERA_SIZE[1])
        return (width, height) if width else CAMERA_SIZE


def _even(value: float) -> int:
    return int(value) + int(value) % 2


def gradient(width: int, height: int) -> Image.Image:
    """viam-server's fake camera picture: yellow at the top-left corner fading to blue at the bottom-right."""
    y, x = np.mgrid[0:height, 0:width]
    distance = np.hypot(x, y) / math.hypot(width, height)
    yellow = (255 * (1 - distance)).astype(np.uint8)
    return Image.fromarray(np.dstack([yellow, yellow, (255 * distance).astype(np.uint8)]))


@register
class FakeCamera(_Fake, Camera):
    """Serves a JPEG of the gradient at the configured size; rendered once, on first request."""

    Config = CameraConfig

    def setup(self, attributes: CameraConfig, dependencies: Mapping[str, ResourceBase]) -> None:
        self.size, self._jpeg = attributes.size(), b""

    async def get_images(self, *, filter_source_names: Sequence[str] | None = None, extra: Any = None,
                         timeout: float | None = None, **kwargs: Any) -> tuple[Sequence[NamedImage], ResponseMetadata]:
        if not self._jpeg:
            self._jpeg = await asyncio.to_thread(self._render)
        images = [] if filter_source_names and self.name not in filter_source_names else [
            NamedImage(self.name, self._jpeg, CameraMimeType.JPEG)]
        return images, ResponseMetadata(captured_at=datetime_to_timestamp(datetime.now(UTC)))

    def _render(self) -> bytes:
        out = io.BytesIO()
        gradient(*self.size).save(out, "JPEG", quality=90)
        return out.getvalue()

    async def get_point_cloud(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> tuple[bytes, str]:
        raise self.unimplemented("point cloud", "call get_images")

    async def get_properties(self, *, timeout: float | None = None, **kwargs: Any) -> Camera.Properties:
        (width, height), (sx, sy) = self.size, (self.size[0] / _INTRINSICS_SIZE[0], self.size[1] / _INTRINSICS_SIZE[1])
        intrinsics = IntrinsicParameters(width_px=width, height_px=height, focal_x_px=_FOCAL[0] * sx,
                                         focal_y_px=_FOCAL[1] * sy, center_x_px=_CENTER[0] * sx, center_y_px=_CENTER[1] * sy)
        return CameraProperties(supports_pcd=False, intrinsic_parameters=intrinsics, mime_types=[CameraMimeType.JPEG])


@register
class FakeSensor(_Fake, Sensor):
    """Always reads what viam-server's fake sensor reads."""

    async def get_readings(self, *, extra: Any = None, timeout: float | None = None,
                           **kwargs: Any) -> Mapping[str, Any]:
        return {"a": 1, "b": 2, "c": 3}


@register
class FakeGeneric(_Fake, Generic):
    """Answers `do_command` with the command it was sent."""

    async def do_command(self, command: Mapping[str, ValueTypes], *, timeout: float | None = None,
                         **kwargs: Any) -> Mapping[str, ValueTypes]:
        return command


@register
class FakeMovementSensor(_Fake, MovementSensor):
    """Always reads what viam-server's fake movement sensor reads: standing in Manhattan, heading 25 degrees."""

    async def get_position(self, *, extra: Any = None, timeout: float | None = None,
                           **kwargs: Any) -> tuple[GeoPoint, float]:
        return GeoPoint(latitude=40.7, longitude=-73.98), 50.5

    async def get_linear_velocity(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> Vector3:
        return Vector3(y=5.4)

    async def get_angular_velocity(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> Vector3:
        return Vector3(z=1)

    async def get_linear_acceleration(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> Vector3:
        return Vector3(x=2.2, y=4.5, z=2)

    async def get_compass_heading(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> float:
        return 25.0

    async def get_orientation(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> Orientation:
        return Orientation(o_z=1)

    async def get_properties(self, *, extra: Any = None, timeout: float | None = None,
                             **kwargs: Any) -> MovementSensor.Properties:
        return MovementSensor.Properties(*[True] * 6)

    async def get_accuracy(self, *, extra: Any = None, timeout: float | None = None,
                           **kwargs: Any) -> GetAccuracyResponse:
        return GetAccuracyResponse()

    async def get_readings(self, *, extra: Any = None, timeout: float | None = None, **kwargs: Any) -> Mapping[str, Any]:
        """Every measurement under viam-server's reading names."""
        position, altitude = await self.get_position()
        return {"position": position, "altitude": altitude, "linear_velocity": await self.get_linear_velocity(),
                "angular_velocity": await self.get_angular_velocity(),
                "linear_acceleration": await self.get_linear_acceleration(),
                "compass": await self.get_compass_heading(), "orientation": await self.get_orientation()}
