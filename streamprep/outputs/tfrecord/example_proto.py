"""`tf.train.Example` as a protobuf message class, without TensorFlow: to read the records back.

The message types are declared here field for field as in TensorFlow's `feature.proto` and
`example.proto` and built in a descriptor pool of their own (so they never clash with TensorFlow's,
if it is loaded too). Parsing is google.protobuf's own, so a record parses here exactly when
`tf.train.Example.FromString` parses it.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def example_type() -> Any:
    """The `Example` message class (`Example.FromString(data)`)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FieldDescriptorProto
    f = descriptor_pb2.FileDescriptorProto(name="streamprep/example.proto", package="tensorflow", syntax="proto3")

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> descriptor_pb2.DescriptorProto:
        m = f.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
        return m

    repeated, optional = proto.LABEL_REPEATED, proto.LABEL_OPTIONAL
    message("BytesList", ("value", 1, proto.TYPE_BYTES, repeated, ""))
    message("FloatList", ("value", 1, proto.TYPE_FLOAT, repeated, "")).field[0].options.packed = True
    message("Int64List", ("value", 1, proto.TYPE_INT64, repeated, "")).field[0].options.packed = True
    feature = message("Feature", ("bytes_list", 1, proto.TYPE_MESSAGE, optional, ".tensorflow.BytesList"),
                      ("float_list", 2, proto.TYPE_MESSAGE, optional, ".tensorflow.FloatList"),
                      ("int64_list", 3, proto.TYPE_MESSAGE, optional, ".tensorflow.Int64List"))
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    features = message("Features", ("feature", 1, proto.TYPE_MESSAGE, repeated, ".tensorflow.Features.FeatureEntry"))
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=proto.TYPE_STRING, label=optional)
    entry.field.add(name="value", number=2, type=proto.TYPE_MESSAGE, label=optional, type_name=".tensorflow.Feature")
    message("Example", ("features", 1, proto.TYPE_MESSAGE, optional, ".tensorflow.Features"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))
