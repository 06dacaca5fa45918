"""Messages with renamed fields for the upcaster's tests, built in the default descriptor pool
(as an imported events_pb2 module would put them there): a renamed Timestamp and a renamed
string at the top, renamed fields inside a nested, a repeated and a map-valued message, a
recursive message, and a message with nothing renamed."""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import Message

from crm.options.v1 import options_pb2

PACKAGE = "upcast_sample.v1"
T = descriptor_pb2.FieldDescriptorProto


def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    type_: str = "",
    *,
    repeated: bool = False,
    stored_as: tuple[str, ...] = (),
) -> None:
    f = message.field.add(name=name, number=number)
    f.label = T.LABEL_REPEATED if repeated else T.LABEL_OPTIONAL
    if type_:
        f.type, f.type_name = T.TYPE_MESSAGE, type_
    else:
        f.type = T.TYPE_STRING
    f.options.Extensions[options_pb2.stored_as].extend(stored_as)


def _build() -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindMessageTypeByName(f"{PACKAGE}.Sampled")
        return  # built already
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto(
        name="upcast_sample/v1/sample.proto",
        package=PACKAGE,
        syntax="proto3",
        dependency=[timestamp_pb2.DESCRIPTOR.name, options_pb2.DESCRIPTOR.name],
    )
    ts = ".google.protobuf.Timestamp"
    inner = file.message_type.add(name="Inner")
    _field(inner, "at_time", 1, ts, stored_as=("at",))
    _field(inner, "note", 2)
    node = file.message_type.add(name="Node")
    _field(node, "note_text", 1, stored_as=("note",))
    _field(node, "child", 2, f".{PACKAGE}.Node")
    sampled = file.message_type.add(name="Sampled")
    _field(sampled, "sample_id", 1)
    _field(sampled, "happen_time", 2, ts, stored_as=("happened_at", "happenedAt"))
    _field(sampled, "label", 3, stored_as=("name",))
    _field(sampled, "inner", 4, f".{PACKAGE}.Inner")
    _field(sampled, "inners", 5, f".{PACKAGE}.Inner", repeated=True)
    entry = sampled.nested_type.add(name="ByKeyEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1)
    _field(entry, "value", 2, f".{PACKAGE}.Inner")
    _field(sampled, "by_key", 6, f".{PACKAGE}.Sampled.ByKeyEntry", repeated=True)
    _field(sampled, "tree", 7, f".{PACKAGE}.Node")
    plain = file.message_type.add(name="Plain")
    _field(plain, "plain_id", 1)
    _field(plain, "inner_note", 2)
    pool.AddSerializedFile(file.SerializeToString())


_build()
SAMPLED = f"{PACKAGE}.Sampled"
PLAIN = f"{PACKAGE}.Plain"


def message_class(full_name: str) -> type[Message]:
    return message_factory.GetMessageClass(
        descriptor_pool.Default().FindMessageTypeByName(full_name)
    )
