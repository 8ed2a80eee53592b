from reference_services.protos import hipstershop_pb2 as _hipstershop_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrderStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATUS_UNSPECIFIED: _ClassVar[OrderStatus]
    ORDER_STATUS_PENDING: _ClassVar[OrderStatus]
    ORDER_STATUS_PAID: _ClassVar[OrderStatus]
    ORDER_STATUS_SHIPPED: _ClassVar[OrderStatus]
    ORDER_STATUS_IN_TRANSIT: _ClassVar[OrderStatus]
    ORDER_STATUS_DELIVERED: _ClassVar[OrderStatus]
    ORDER_STATUS_FAILED: _ClassVar[OrderStatus]
    ORDER_STATUS_CANCELLED: _ClassVar[OrderStatus]
ORDER_STATUS_UNSPECIFIED: OrderStatus
ORDER_STATUS_PENDING: OrderStatus
ORDER_STATUS_PAID: OrderStatus
ORDER_STATUS_SHIPPED: OrderStatus
ORDER_STATUS_IN_TRANSIT: OrderStatus
ORDER_STATUS_DELIVERED: OrderStatus
ORDER_STATUS_FAILED: OrderStatus
ORDER_STATUS_CANCELLED: OrderStatus

class UserRegistered(_message.Message):
    __slots__ = ("user_id", "email", "name")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    email: str
    name: str
    def __init__(self, user_id: _Optional[str] = ..., email: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class OrderLine(_message.Message):
    __slots__ = ("product_id", "quantity", "unit_cost")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_COST_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    quantity: int
    unit_cost: _hipstershop_pb2.Money
    def __init__(self, product_id: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_cost: _Optional[_Union[_hipstershop_pb2.Money, _Mapping]] = ...) -> None: ...

class OrderPlaced(_message.Message):
    __slots__ = ("order_id", "user_id", "email", "items", "shipping_cost", "total", "shipping_address", "tracking_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_COST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TRACKING_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    user_id: str
    email: str
    items: _containers.RepeatedCompositeFieldContainer[OrderLine]
    shipping_cost: _hipstershop_pb2.Money
    total: _hipstershop_pb2.Money
    shipping_address: _hipstershop_pb2.Address
    tracking_id: str
    def __init__(self, order_id: _Optional[str] = ..., user_id: _Optional[str] = ..., email: _Optional[str] = ..., items: _Optional[_Iterable[_Union[OrderLine, _Mapping]]] = ..., shipping_cost: _Optional[_Union[_hipstershop_pb2.Money, _Mapping]] = ..., total: _Optional[_Union[_hipstershop_pb2.Money, _Mapping]] = ..., shipping_address: _Optional[_Union[_hipstershop_pb2.Address, _Mapping]] = ..., tracking_id: _Optional[str] = ...) -> None: ...

class OrderStatusChanged(_message.Message):
    __slots__ = ("order_id", "from_status", "to_status", "reason")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    from_status: OrderStatus
    to_status: OrderStatus
    reason: str
    def __init__(self, order_id: _Optional[str] = ..., from_status: _Optional[_Union[OrderStatus, str]] = ..., to_status: _Optional[_Union[OrderStatus, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class PaymentCompleted(_message.Message):
    __slots__ = ("payment_id", "order_id", "amount")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    order_id: str
    amount: _hipstershop_pb2.Money
    def __init__(self, payment_id: _Optional[str] = ..., order_id: _Optional[str] = ..., amount: _Optional[_Union[_hipstershop_pb2.Money, _Mapping]] = ...) -> None: ...

class PaymentRefunded(_message.Message):
    __slots__ = ("payment_id", "order_id", "amount", "reason")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    order_id: str
    amount: _hipstershop_pb2.Money
    reason: str
    def __init__(self, payment_id: _Optional[str] = ..., order_id: _Optional[str] = ..., amount: _Optional[_Union[_hipstershop_pb2.Money, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class LowStock(_message.Message):
    __slots__ = ("product_id", "available")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    available: int
    def __init__(self, product_id: _Optional[str] = ..., available: _Optional[int] = ...) -> None: ...

class ShipmentPickedUp(_message.Message):
    __slots__ = ("order_id", "tracking_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TRACKING_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    tracking_id: str
    def __init__(self, order_id: _Optional[str] = ..., tracking_id: _Optional[str] = ...) -> None: ...

class ShipmentDelivered(_message.Message):
    __slots__ = ("order_id", "tracking_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TRACKING_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    tracking_id: str
    def __init__(self, order_id: _Optional[str] = ..., tracking_id: _Optional[str] = ...) -> None: ...
