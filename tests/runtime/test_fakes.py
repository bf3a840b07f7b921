"""viam-server's builtin fake components, in the config shapes users publish, served by a real `labelsieve run` and
called through the official SDK's typed clients."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

from grpclib import GRPCError, Status
from PIL import Image
from support import Machine, connect, eventually, validate
from viam.components.arm import Arm, JointPositions, KinematicsFileFormat, Pose
from viam.components.base import Base, Vector3
from viam.components.camera import Camera
from viam.components.encoder import Encoder
from viam.components.generic import Generic
from viam.components.motor import Motor
from viam.components.movement_sensor import MovementSensor
from viam.components.sensor import Sensor
from viam.components.servo import Servo
from viam.robot.client import RobotClient

KINEMATICS = {"name": "two-joint", "links": [], "joints": [
    {"id": "shoulder", "type": "revolute", "parent": "world", "axis": {"z": 1}, "max": 360, "min": -360},
    {"id": "elbow", "type": "revolute", "parent": "shoulder", "axis": {"y": 1}, "max": 180, "min": -180},
    {"id": "mount", "type": "fixed", "parent": "elbow"}]}


def config(kinematics: Path) -> dict[str, Any]:
    return {"components": [
        {"name": "motor1", "type": "motor", "model": "fake"},  # the legacy shape most published configs use
        {"name": "enc1", "type": "encoder", "model": "fake"},
        {"name": "motor2", "type": "motor", "model": "fake",
         "attributes": {"encoder": "enc1", "ticks_per_rotation": 100, "max_rpm": 6000, "pins": {"pwm": "12"}}},
        {"name": "base1", "api": "rdk:component:base", "model": "rdk:builtin:fake"},
        {"name": "arm1", "api": "rdk:component:arm", "model": "rdk:builtin:fake", "attributes": {"arm-model": "ur5e"}},
        {"name": "arm2", "api": "rdk:component:arm", "model": "fake", "attributes": {"model-path": str(kinematics)}},
        {"name": "cam1", "type": "camera", "model": "fake", "attributes": {"width": 320, "height": 240}},
        {"name": "cam2", "type": "camera", "model": "fake", "attributes": {"width": 640, "animated": True}},
        {"name": "sensor1", "type": "sensor", "model": "fake", "attributes": {"unread": 1}},
        {"name": "generic1", "type": "generic", "model": "fake"},
        {"name": "servo1", "type": "servo", "model": "fake"},
        {"name": "gps1", "type": "movement_sensor", "model": "fake"},
    ]}


async def unimplemented(call: Any) -> str:
    try:
        await call
    except GRPCError as exc:
        assert exc.status == Status.UNIMPLEMENTED, exc
        return str(exc.message)
    raise AssertionError("expected UNIMPLEMENTED")


async def motors_and_base(robot: RobotClient) -> None:
    motor = Motor.from_robot(robot, "motor1")
    await motor.set_power(0.4)
    assert await motor.is_powered() == (True, 0.4) and await motor.is_moving()
    base = Base.from_robot(robot, "base1")
    await base.set_velocity(linear=Vector3(y=100), angular=Vector3())
    assert await base.is_moving()
    await robot.stop_all()
    assert await motor.is_powered() == (False, 0.0) and not await base.is_moving()
    assert (await base.get_properties()).width_meters == 0.6

    await motor.reset_zero_position(0)
    await motor.go_for(rpm=100, revolutions=-0.05)  # 30 ms at viam-server's default max_rpm of 100
    assert abs(await motor.get_position() + 0.05) < 1e-9 and not await motor.is_moving()
    await motor.go_to(rpm=100, position_revolutions=0)
    assert abs(await motor.get_position()) < 1e-9

    long_move = asyncio.create_task(motor.go_for(rpm=100, revolutions=100))  # a minute, unless stopped

    async def turning() -> None:
        assert await motor.is_moving() and 0 < await motor.get_position() < 100

    await eventually(turning)
    await robot.stop_all()
    await asyncio.wait_for(long_move, 20)  # the stop ends the move and returns the call
    stopped_at = await motor.get_position()
    assert 0 < stopped_at < 100 and not await motor.is_moving() and await motor.get_position() == stopped_at

    geared = Motor.from_robot(robot, "motor2")  # drives its fake encoder, and reads its position from it
    await geared.go_for(rpm=6000, revolutions=2)
    ticks, _ = await Encoder.from_robot(robot, "enc1").get_position()
    assert ticks == 200 and await geared.get_position() == 2.0
    assert (await geared.get_properties()).position_reporting
    await Encoder.from_robot(robot, "enc1").reset_position()
    assert await geared.get_position() == 0.0


async def arms(robot: RobotClient) -> None:
    arm = Arm.from_robot(robot, "arm1")
    assert list((await arm.get_joint_positions()).values) == [0.0] * 6
    await arm.move_to_joint_positions(JointPositions(values=[10, 20, 30, 40, 50, 60]))
    assert list((await arm.get_joint_positions()).values) == [10, 20, 30, 40, 50, 60]
    try:
        await arm.move_to_joint_positions(JointPositions(values=[1, 2]))
        raise AssertionError("a wrong joint count was accepted")
    except GRPCError as exc:
        assert exc.status == Status.INVALID_ARGUMENT and "has 6 joints, got 2" in str(exc.message)
    await arm.move_to_position(Pose(x=100, y=-50, z=300, o_z=1))
    assert (await arm.get_end_position()).x == 100
    assert "kinematics file" in await unimplemented(arm.get_kinematics())

    from_file = Arm.from_robot(robot, "arm2")
    assert len((await from_file.get_joint_positions()).values) == 2  # the fixed joint is no degree of freedom
    kind, data = (await from_file.get_kinematics())[:2]
    assert kind == KinematicsFileFormat.KINEMATICS_FILE_FORMAT_SVA and json.loads(data) == KINEMATICS


async def cameras(robot: RobotClient) -> None:
    for name, size in (("cam1", (320, 240)), ("cam2", (640, 360))):
        camera = Camera.from_robot(robot, name)
        images, _ = await camera.get_images()
        image = Image.open(io.BytesIO(images[0].data))
        assert image.format == "JPEG" and image.size == size
        assert image.getpixel((0, 0))[2] < 40 and image.getpixel((size[0] - 1, size[1] - 1))[2] > 200  # yellow to blue
        assert (await camera.get_properties()).intrinsic_parameters.width_px == size[0]
    assert "point cloud" in await unimplemented(Camera.from_robot(robot, "cam1").get_point_cloud())


async def the_rest(robot: RobotClient) -> None:
    assert await Sensor.from_robot(robot, "sensor1").get_readings() == {"a": 1, "b": 2, "c": 3}
    command = {"command": "wave", "times": 3, "nested": {"fast": True}}
    assert await Generic.from_robot(robot, "generic1").do_command(command) == command
    servo = Servo.from_robot(robot, "servo1")
    await servo.move(90)
    assert await servo.get_position() == 90
    gps = MovementSensor.from_robot(robot, "gps1")
    point, altitude = await gps.get_position()
    assert (point.latitude, point.longitude, altitude) == (40.7, -73.98, 50.5)
    assert (await gps.get_readings())["compass"] == 25


def test_fakes_from_published_configs_answer_through_the_sdk(tmp_path: Path) -> None:
    kinematics = tmp_path / "two_joint.json"
    kinematics.write_text(json.dumps(KINEMATICS))

    async def run(address: str) -> None:
        robot = await connect(address)
        try:
            assert {n.name for n in robot.resource_names} >= {"motor1", "base1", "arm1", "cam1", "sensor1", "generic1"}
            await motors_and_base(robot)
            await arms(robot)
            await cameras(robot)
            await the_rest(robot)
        finally:
            await robot.close()

    async def resized(address: str) -> None:
        robot = await connect(address)
        try:
            images, _ = await Camera.from_robot(robot, "cam1").get_images()
            assert Image.open(io.BytesIO(images[0].data)).size == (160, 120)
        finally:
            await robot.close()

    with Machine(config(kinematics), tmp_path) as machine:
        asyncio.run(run(machine.address))
        assert "sensor1: ignoring attribute 'unread'" in machine.log
        edited = config(kinematics)
        next(c for c in edited["components"] if c["name"] == "cam1")["attributes"] = {"width": 160, "height": 120}
        machine.write(edited)  # a live edit re-creates the fake with its new attributes
        asyncio.run(eventually(lambda: resized(machine.address)))


def test_validate_names_the_fake_and_its_wrong_attribute(tmp_path: Path) -> None:
    bad = {"components": [{"name": "motor1", "type": "motor", "model": "fake", "attributes": {"max_rpm": "fast"}},
                          {"name": "cam1", "type": "camera", "model": "fake", "attributes": {"width": 641}},
                          {"name": "arm1", "type": "arm", "model": "fake", "attributes": {"arm-model": "ur5"}},
                          {"name": "arm2", "type": "arm", "model": "fake", "attributes": {"model-path": 6}}]}
    result = validate(bad, tmp_path)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "resource 'motor1': 'attributes.max_rpm' must be a number, got 'fast'" in out
    assert "resource 'cam1': 'attributes.width' must be an even number" in out
    assert "resource 'arm1': 'attributes.arm-model' 'ur5' is not an arm the fake knows (did you mean 'ur5e'?)" in out
    assert "resource 'arm2': 'attributes.model-path' must be a string, got 6" in out
