using System.Collections.Concurrent;
using Higher.Reference;

namespace Higher;

/// <summary>
/// Maps devices to the backends that serve them. The CPU is served by <see cref="ReferenceBackend"/>;
/// other backends (CUDA) register themselves here once created.
/// </summary>
public static class Backends
{
    private static readonly ConcurrentDictionary<Device, IBackend> Registered = new();

    /// <summary>Makes <paramref name="backend"/> the backend of its device (replacing any earlier one).</summary>
    public static void Register(IBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        Registered[backend.Device] = backend;
    }

    /// <summary>Removes the backend registered for <paramref name="device"/>, if any.</summary>
    public static void Unregister(Device device) => Registered.TryRemove(device, out _);

    /// <summary>The backend serving <paramref name="device"/>; throws naming the device when none is registered.</summary>
    public static IBackend For(Device device)
    {
        if (device.Type == DeviceType.Cpu)
        {
            return Registered.TryGetValue(device, out var cpu) ? cpu : ReferenceBackend.Instance;
        }
        if (Registered.TryGetValue(device, out var b))
        {
            return b;
        }
        throw new InvalidOperationException(
            $"No backend is registered for device {device}. Create one (e.g. CudaBackend.TryCreate) and call Backends.Register(backend).");
    }
}
