// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title ERC-8004 validation registry for the local devnet.
/// @notice Emits the deployed v1 events byte for byte. A request is made by the agent's owner or
/// an operator and identified by its hash; only the named validator responds (0-100), as often
/// as it likes. getSummary and getAgentValidations answer as the reference implementation
/// (getValidatorRequests is left out: a second list per request would cost each request another
/// storage slot). The `*Batch` functions emit many events per transaction for benchmarks.
/// Rebuild the artifacts with `npm run build:contracts` after editing this file.
interface IIdentityRegistry {
    function ownerOf(uint256 tokenId) external view returns (address);
    function isApprovedForAll(address owner, address operator) external view returns (bool);
    function getApproved(uint256 tokenId) external view returns (address);
}

contract ValidationRegistry {
    /// @dev The agent id shares the validator's slot: the identity registry numbers agents from
    /// 0, so 80 bits hold any id that can exist, and a request writes one slot less.
    struct Status {
        address validatorAddress;
        uint8 response;
        bool hasResponse;
        uint80 agentId;
        bytes32 responseHash;
        string tag;
        uint256 lastUpdate;
    }

    struct RequestInput {
        address validatorAddress;
        uint256 agentId;
        string requestURI;
        bytes32 requestHash;
    }

    struct ResponseInput {
        bytes32 requestHash;
        uint8 response;
        string responseURI;
        bytes32 responseHash;
        string tag;
    }

    event ValidationRequest(
        address indexed validatorAddress, uint256 indexed agentId, string requestURI, bytes32 indexed requestHash
    );
    event ValidationResponse(
        address indexed validatorAddress,
        uint256 indexed agentId,
        bytes32 indexed requestHash,
        uint8 response,
        string responseURI,
        bytes32 responseHash,
        string tag
    );

    address private immutable _identityRegistry;
    mapping(bytes32 requestHash => Status) private _status;
    mapping(uint256 agentId => bytes32[]) private _agentValidations;

    constructor(address identityRegistry_) {
        require(identityRegistry_ != address(0), "bad identity registry");
        _identityRegistry = identityRegistry_;
    }

    // -- requests ----------------------------------------------------------------------------

    function validationRequest(
        address validatorAddress,
        uint256 agentId,
        string calldata requestURI,
        bytes32 requestHash
    ) external {
        _request(validatorAddress, agentId, requestHash);
        emit ValidationRequest(validatorAddress, agentId, requestURI, requestHash);
    }

    /// @notice Devnet only: validationRequest for each item, from the caller.
    function validationRequestBatch(RequestInput[] calldata items) external {
        for (uint256 i; i < items.length; ++i) {
            RequestInput calldata r = items[i];
            _request(r.validatorAddress, r.agentId, r.requestHash);
            emit ValidationRequest(r.validatorAddress, r.agentId, r.requestURI, r.requestHash);
        }
    }

    function _request(address validatorAddress, uint256 agentId, bytes32 requestHash) private {
        require(validatorAddress != address(0), "zero validator");
        IIdentityRegistry identity = IIdentityRegistry(_identityRegistry);
        address owner = identity.ownerOf(agentId);
        require(
            msg.sender == owner || identity.isApprovedForAll(owner, msg.sender)
                || identity.getApproved(agentId) == msg.sender,
            "not authorized"
        );
        require(agentId <= type(uint80).max, "agentId > 80 bits");
        Status storage status = _status[requestHash];
        require(status.validatorAddress == address(0), "request exists");
        status.validatorAddress = validatorAddress;
        status.agentId = uint80(agentId);
        _agentValidations[agentId].push(requestHash);
    }

    // -- responses ---------------------------------------------------------------------------

    function validationResponse(
        bytes32 requestHash,
        uint8 response,
        string calldata responseURI,
        bytes32 responseHash,
        string calldata tag
    ) external {
        uint256 agentId = _respond(requestHash, response, responseHash, tag);
        emit ValidationResponse(msg.sender, agentId, requestHash, response, responseURI, responseHash, tag);
    }

    /// @notice Devnet only: validationResponse for each item, from the caller.
    function validationResponseBatch(ResponseInput[] calldata items) external {
        for (uint256 i; i < items.length; ++i) {
            ResponseInput calldata r = items[i];
            uint256 agentId = _respond(r.requestHash, r.response, r.responseHash, r.tag);
            emit ValidationResponse(
                msg.sender, agentId, r.requestHash, r.response, r.responseURI, r.responseHash, r.tag
            );
        }
    }

    function _respond(bytes32 requestHash, uint8 response, bytes32 responseHash, string calldata tag)
        private
        returns (uint256 agentId)
    {
        Status storage status = _status[requestHash];
        require(status.validatorAddress != address(0), "unknown request");
        require(status.validatorAddress == msg.sender, "not the validator");
        require(response <= 100, "response > 100");
        status.response = response;
        status.hasResponse = true;
        status.responseHash = responseHash;
        status.tag = tag;
        status.lastUpdate = block.timestamp;
        agentId = status.agentId;
    }

    // -- reads -------------------------------------------------------------------------------

    function getValidationStatus(bytes32 requestHash)
        external
        view
        returns (
            address validatorAddress,
            uint256 agentId,
            uint8 response,
            bytes32 responseHash,
            string memory tag,
            uint256 lastUpdate
        )
    {
        Status storage status = _status[requestHash];
        require(status.validatorAddress != address(0), "unknown request");
        return (
            status.validatorAddress,
            status.agentId,
            status.response,
            status.responseHash,
            status.tag,
            status.lastUpdate
        );
    }

    /// @notice Count and average (rounded down) of the latest responses to the agent's requests,
    /// of those from the listed validators (none: any) whose latest response's tag is the given
    /// one (empty: any); requests without a response do not count.
    function getSummary(uint256 agentId, address[] calldata validatorAddresses, string calldata tag)
        external
        view
        returns (uint64 count, uint8 avgResponse)
    {
        bytes32 tagHash = bytes(tag).length == 0 ? bytes32(0) : keccak256(bytes(tag));
        bytes32[] storage requestHashes = _agentValidations[agentId];
        uint256 total;
        for (uint256 i; i < requestHashes.length; ++i) {
            Status storage status = _status[requestHashes[i]];
            if (!status.hasResponse || !_listed(status.validatorAddress, validatorAddresses)) {
                continue;
            }
            if (tagHash != bytes32(0) && keccak256(bytes(status.tag)) != tagHash) {
                continue;
            }
            total += status.response;
            ++count;
        }
        avgResponse = count > 0 ? uint8(total / count) : 0;
    }

    /// @notice The hashes of the agent's validation requests, oldest first.
    function getAgentValidations(uint256 agentId) external view returns (bytes32[] memory) {
        return _agentValidations[agentId];
    }

    /// @dev Whether `validator` is in the list; an empty list admits any.
    function _listed(address validator, address[] calldata validators) private pure returns (bool) {
        if (validators.length == 0) {
            return true;
        }
        for (uint256 i; i < validators.length; ++i) {
            if (validators[i] == validator) {
                return true;
            }
        }
        return false;
    }

    function getIdentityRegistry() external view returns (address) {
        return _identityRegistry;
    }

    function getVersion() external pure returns (string memory) {
        return "devnet-1";
    }
}
